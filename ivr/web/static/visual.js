// The caller's visual page: follows the call over a websocket, shows what was said (always as
// text, never as HTML), offers the current step's options as buttons and a keypad with delete.
"use strict";
(function () {
  const app = document.getElementById("app");
  if (!app) return;
  const csrf = app.dataset.csrf;
  const T = JSON.parse(app.dataset.strings || "{}");
  const transcript = document.getElementById("transcript");
  const choices = document.getElementById("choices");
  const status = document.getElementById("status");
  const keypadCard = document.getElementById("keypad-card");
  const entry = document.getElementById("entry");
  const hint = document.getElementById("entry-hint");
  const send = document.getElementById("send");
  let seen = 0, ws = null, ended = false, delay = 500, want = null, submitting = false;
  document.addEventListener("submit", (e) => { if (!e.defaultPrevented) submitting = true; });  // a real navigation

  function line(who, text, cls) {
    const li = document.createElement("li");
    li.className = cls;
    const b = document.createElement("b");
    b.textContent = who + ": ";
    const span = document.createElement("span");
    span.textContent = text;
    li.append(b, span);
    transcript.append(li);
    li.scrollIntoView({block: "nearest"});
  }

  function clearChoices() {
    choices.replaceChildren();
    keypadCard.hidden = true;
    want = null;
  }

  function showChoices(ev) {
    clearChoices();
    for (const item of ev.items || []) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.dataset.value = item.value;
      button.textContent = item.label || item.value;
      button.addEventListener("click", () => act("tap", item.value));
      choices.append(button);
    }
    if (ev.entry) {
      want = ev.entry.length || null;
      entry.value = "";
      entry.type = ev.entry.sensitive ? "password" : "text";
      hint.textContent = want ? want + " " + (T.digits || "digits") : "";
      keypadCard.hidden = false;
      validate();
    }
  }

  function validate() {
    const v = entry.value;
    send.disabled = ended || !v || (want && v.length !== want);
  }

  function act(type, value) {
    if (ended) return;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({type, value, csrf}));
    } else {  // no live feed: the form posts do the same
      const form = document.createElement("form");
      form.method = "post";
      form.action = type === "tap" ? "/v/tap" : "/v/keys";
      for (const [k, v] of [["csrf", csrf], ["value", value]]) {
        const input = document.createElement("input");
        input.type = "hidden"; input.name = k; input.value = v;
        form.append(input);
      }
      document.body.append(form);
      form.submit();
    }
  }

  function end(how) {
    ended = true;
    clearChoices();
    status.textContent = how === "transfer" ? T.ended_transfer : T.ended_hangup;
    status.className = "status ended";
    for (const b of document.querySelectorAll("button, input")) b.disabled = true;
  }

  function handle(ev) {
    if (ev.n) seen = Math.max(seen, ev.n);
    if (ev.type === "said") {
      line(ev.who === "ivr" ? T.ivr : T.you, ev.text, ev.who);
    } else if (ev.type === "choices") {
      showChoices(ev);
    } else if (ev.type === "step") {
      clearChoices();
    } else if (ev.type === "verified" && ev.ok) {
      // the policies appear; not while this page's own form is on its way (its answer shows them)
      if (document.getElementById("verify") && !submitting) location.replace("/v");
    } else if (ev.type === "ended") {
      end(ev.how);
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(scheme + "://" + location.host + "/v/ws?since=" + seen);
    ws.onopen = () => { delay = 500; status.textContent = T.live; status.className = "status live"; };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type === "hello") {
        for (const ev of data.events) handle(ev);
      } else if (data.type === "refused") {
        status.textContent = T.refused;
      } else if (data.type !== "ack") {
        handle(data);
      }
    };
    ws.onclose = (e) => {
      ws = null;
      if (ended || e.code === 1000 || e.code === 4410) return;
      status.textContent = T.reconnecting;
      status.className = "status lost";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 8000);
    };
  }

  for (const key of document.querySelectorAll(".key[data-key]")) {
    key.addEventListener("click", () => {
      if (!want || entry.value.length < want) entry.value += key.dataset.key;
      validate();
    });
  }
  entry.addEventListener("input", () => {
    entry.value = entry.value.replace(/[^0-9]/g, "").slice(0, want || 32);
    validate();
  });
  document.getElementById("delete").addEventListener("click", () => {
    entry.value = entry.value.slice(0, -1);
    validate();
  });
  document.getElementById("keypad-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = entry.value + (want ? "" : "#");
    entry.value = "";
    validate();
    act("keys", v);
  });
  // the texted code: digits only; focused once sent; one request per press
  const code = document.getElementById("otp-code");
  if (code) {
    code.addEventListener("input", () => { code.value = code.value.replace(/[^0-9]/g, "").slice(0, 6); });
    if (new URLSearchParams(location.search).get("notice") === "code_sent") code.focus();
  }
  const sendCode = document.querySelector("form.send-code");
  if (sendCode) {
    sendCode.addEventListener("submit", () => {
      setTimeout(() => { document.getElementById("send-code").disabled = true; }, 0);
    });
  }
  connect();
})();
