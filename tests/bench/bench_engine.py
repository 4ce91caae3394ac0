"""Engine benchmark: `ivr bench engine --json` (or `python tests/bench/bench_engine.py`).

Generates 1,000 synthetic scenes (English and Mandarin, 10 example utterances each) plus the
hotline settings and keypad menus that reach them, into a temporary folder, then measures:

  check    `ivr check DIR` as a fresh process (cold start included), median of 3 runs.   < 3 s
  routing  one utterance against the 1,000 scenes with the real e5 embedder: p50/p95/max
           over distinct paraphrases that are not examples; index build reported apart.  p95 < 20 ms
  engine   CPU time per executed step over many simulated keypad-only calls
           (menus, ask, say, branch, set, lookup, confirm, goto; no model involved).    < 1 ms/step

Every figure is measured on the machine running it; nothing is hard-coded.
Options: --quick (fewer calls and utterances), --scenes N, --calls N, --utterances N,
--runs N, --seed N, --keep (keep the generated folder), --skip check,routing,engine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a plain script
    sys.path.insert(0, str(REPO))

CHECK_TARGET_S = 3
ROUTING_TARGET_MS = 20
ENGINE_TARGET_US = 1000

# --- vocabulary --------------------------------------------------------------------------
# 25 products x 40 actions = 1,000 scenes. Actions carry {p}, the product's name.
PRODUCTS = [
    ("credit_card", "credit card", "信用卡"), ("debit_card", "debit card", "借记卡"),
    ("car_insurance", "car insurance", "车险"), ("home_insurance", "home insurance", "家财险"),
    ("travel_insurance", "travel insurance", "旅行险"), ("health_insurance", "health insurance", "健康险"),
    ("life_policy", "life insurance policy", "寿险保单"), ("pet_insurance", "pet insurance", "宠物险"),
    ("mortgage", "mortgage", "房贷"), ("personal_loan", "personal loan", "个人贷款"),
    ("savings_account", "savings account", "储蓄账户"), ("current_account", "current account", "活期账户"),
    ("pension_plan", "pension plan", "养老金计划"), ("investment_fund", "investment fund", "理财基金"),
    ("roadside_cover", "roadside cover", "道路救援服务"), ("motorbike_insurance", "motorbike insurance", "摩托车险"),
    ("business_account", "business account", "企业账户"), ("student_loan", "student loan", "助学贷款"),
    ("gold_card", "gold card", "金卡"), ("mobile_app", "mobile banking app", "手机银行"),
    ("online_banking", "online banking", "网上银行"), ("fixed_deposit", "fixed deposit", "定期存款"),
    ("forex_account", "foreign currency account", "外汇账户"),
    ("accident_insurance", "accident insurance", "意外险"), ("annuity", "annuity plan", "年金保险"),
]
ACTIONS = [
    ("balance", "Balance", "check the balance on my {p}", "查询{p}余额"),
    ("cancel", "Cancel", "cancel my {p}", "取消{p}"),
    ("renew", "Renew", "renew my {p}", "续期{p}"),
    ("pay", "Payment", "make a payment on my {p}", "给{p}缴费"),
    ("address", "Address change", "change the address on my {p}", "修改{p}的联系地址"),
    ("problem", "Report a problem", "report a problem with my {p}", "反映{p}的问题"),
    ("open", "Open", "open a new {p}", "新开一个{p}"),
    ("close", "Close", "close my {p} for good", "注销{p}"),
    ("upgrade", "Upgrade", "upgrade my {p}", "升级{p}"),
    ("statement", "Statement", "get a statement for my {p}", "打印{p}对账单"),
    ("pin", "PIN change", "change the pin for my {p}", "修改{p}密码"),
    ("fees", "Fees", "ask about the fees on my {p}", "咨询{p}的手续费"),
    ("rate", "Interest rate", "find out the interest rate of my {p}", "了解{p}的利率"),
    ("add_spouse", "Add spouse", "add my spouse to my {p}", "给{p}添加配偶"),
    ("remove_person", "Remove a person", "remove a person from my {p}", "从{p}删除一个人"),
    ("phone", "Phone number change", "update the phone number on my {p}", "更换{p}绑定的手机号"),
    ("paper_copy", "Paper copy", "get a paper copy of my {p} contract", "补发{p}的纸质合同"),
    ("dispute", "Dispute a charge", "dispute a charge on my {p}", "对{p}的一笔扣款提出异议"),
    ("refund", "Refund", "get a refund on my {p}", "申请{p}退款"),
    ("complaint", "Complaint", "complain about my {p}", "投诉{p}"),
    ("autopay", "Automatic payments", "set up automatic payments for my {p}", "开通{p}自动扣款"),
    ("stop_autopay", "Stop automatic payments", "stop the automatic payments on my {p}", "停止{p}自动扣款"),
    ("handover", "Transfer ownership", "transfer my {p} to someone else", "把{p}转让给别人"),
    ("freeze", "Freeze", "freeze my {p}", "冻结{p}"),
    ("unfreeze", "Unfreeze", "unfreeze my {p}", "解冻{p}"),
    ("raise_limit", "Raise the limit", "raise the limit on my {p}", "提高{p}额度"),
    ("lower_limit", "Lower the limit", "lower the limit on my {p}", "降低{p}额度"),
    ("due_date", "Due date", "know when my {p} payment is due", "查询{p}还款日"),
    ("documents", "Documents needed", "find out which documents my {p} needs", "了解{p}需要哪些材料"),
    ("beneficiary", "Beneficiary", "change the beneficiary of my {p}", "变更{p}受益人"),
    ("coverage", "Coverage", "understand what my {p} covers", "了解{p}的保障范围"),
    ("discount", "Discount", "ask for a discount on my {p}", "申请{p}优惠"),
    ("points", "Reward points", "redeem the reward points from my {p}", "兑换{p}积分"),
    ("abroad", "Use abroad", "use my {p} abroad", "在国外使用{p}"),
    ("name_change", "Name change", "change the name on my {p}", "修改{p}上的姓名"),
    ("contract", "Contract copy", "get a copy of the contract for my {p}", "索取{p}合同副本"),
    ("tax", "Tax certificate", "get a tax certificate for my {p}", "开具{p}的税务证明"),
    ("late_fee", "Late fee", "have the late fee on my {p} waived", "减免{p}的滞纳金"),
    ("appointment", "Appointment", "book a branch appointment about my {p}", "预约{p}的线下办理"),
    ("activate", "Activate", "activate my {p}", "激活{p}"),
]
EXAMPLE_TEMPLATES = {
    "en": ["I want to {x}", "how do I {x}", "can you help me {x}", "I'd like to {x} please",
           "I need to {x} today", "I'm calling to {x}", "help me {x}"],
    "zh": ["我想{x}", "怎么{x}", "帮我{x}", "我要{x}", "请问如何{x}", "我打电话是想{x}", "想咨询一下{x}"],
}
PARAPHRASE_TEMPLATES = {  # never used for examples, so a paraphrase is never an example
    "en": ["is it possible to {x}", "what should I do to {x}", "hi, I was hoping to {x}",
           "please let me {x}", "could you {x} for me", "I'm trying to {x} but I'm not sure how"],
    "zh": ["我打算{x}", "麻烦你{x}", "能不能{x}", "你好，我需要{x}", "我这边想{x}，怎么弄", "请帮忙{x}"],
}
QUEUES = ("agents", "cards", "claims", "complaints")


def _norm(text: str) -> str:  # the checker's duplicate rule (ivr.flow.validate._norm)
    import re

    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _t(en: str, zh: str) -> dict:
    return {"en": en, "zh": zh}


@dataclass
class Scene:
    id: str
    kind: str  # ticket | menu | dated | card
    product: int
    action: int
    x: dict  # the action phrase per language
    paraphrases: list = field(default_factory=list)  # (lang, text)
    keys: list = field(default_factory=list)  # keypad path from the main menu
    partner: str = ""  # a scene this one may jump to


@dataclass
class Generated:
    root: Path
    scenes: list
    menu_scenes: int
    examples: int


def generate(root: Path, n_scenes: int, per_lang: int, seed: int) -> Generated:
    """Write hotline.yaml, welcome/main_menu/anything_else, keypad menus and n intent scenes."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    combos = [(p, a) for p in range(len(PRODUCTS)) for a in range(len(ACTIONS))]
    if n_scenes > len(combos):
        raise SystemExit(f"at most {len(combos)} scenes")
    # keep whole products so every product menu is complete; order by product
    combos = combos[:n_scenes]
    kinds = ("ticket", "menu", "dated", "card")
    scenes: list[Scene] = []
    seen: set[tuple[str, str]] = set()
    examples = 0
    for k, (p, a) in enumerate(combos):
        pslug, pen, pzh = PRODUCTS[p]
        aslug, _atitle, aen, azh = ACTIONS[a]
        x = {"en": aen.format(p=pen), "zh": azh.format(p=pzh)}
        sc = Scene(f"{pslug}_{aslug}", kinds[k % 4], p, a, x)
        intents = {}
        for lang in ("en", "zh"):
            templates = rng.sample(EXAMPLE_TEMPLATES[lang], per_lang)
            intents[lang] = [t.format(x=x[lang]) for t in templates]
            for text in intents[lang]:
                key = (lang, _norm(text))
                assert key not in seen, f"duplicate example {text!r}"
                seen.add(key)
            examples += len(intents[lang])
            sc.paraphrases += [(lang, t.format(x=x[lang])) for t in PARAPHRASE_TEMPLATES[lang]]
        if sc.kind == "card":
            sc.partner = scenes[-1].id  # the previous scene is a `dated` one
        elif sc.kind == "menu":  # the same product's next action, when there is one
            sc.partner = f"{pslug}_{ACTIONS[a + 1][0]}" if a + 1 < len(ACTIONS) else "anything_else"
        scenes.append(sc)
        _write(root / f"{sc.id}.yaml", _scene_doc(sc, intents))
    ids = {s.id for s in scenes}
    for s in scenes:  # a menu scene's third option must exist in a cut-down set
        if s.partner and s.partner not in ids:
            s.partner = "anything_else"
    menus = _write_menus(root, scenes)
    _write(root / "hotline.yaml", _hotline())
    return Generated(root, scenes, menus, examples)


def _write(path: Path, data) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=200),
                    encoding="utf-8")


def _scene_doc(sc: Scene, intents: dict) -> dict:
    pslug, pen, pzh = PRODUCTS[sc.product]
    _, atitle, _, _ = ACTIONS[sc.action]
    x = sc.x
    doc = {
        "id": sc.id,
        "title": _t(f"{atitle}: {pen}", x["zh"]),
        "description": f"Synthetic {sc.kind} scene for the engine benchmark.",
        "intents": intents,
        "keywords": {"en": [f"{pen} {atitle.lower()}"], "zh": [x["zh"]]},
    }
    queue = QUEUES[(sc.product + sc.action) % len(QUEUES)]
    if sc.kind == "ticket":
        steps = [
            {"id": "intro", "say": _t(f"Sure, I can help you {x['en']}.", f"好的，我来帮您{x['zh']}。")},
            {"id": "ref_no", "ask": {
                "slot": "ref_no",
                "say": _t("Please key in your 8-digit customer number.", "请输入您的8位客户号。"),
                "validate": {"type": "digits", "length": 8},
                "no_match": {"say": _t("That is not an 8-digit number.", "客户号应为8位数字。"),
                             "retry": 2, "then": "escalate"}}},
            {"id": "check_ref", "branch": {"cases": [
                {"if": {"slot": "ref_no", "matches": "^9"}, "then": "escalate"},
                {"if": {"flag": f"bench.{pslug}.closed"}, "then": "escalate"}]}},
            {"id": "register", "lookup": {"action": "claims.report",
                                          "args": {"location": "{ref_no}", "kind": sc.id},
                                          "save_as": "ticket", "on_error": "escalate"}},
            {"id": "remember", "set": {"topic": sc.id, "ticket_no": "{ticket.number}"}},
            {"id": "done", "say": _t("All set. Your reference number is {ticket_no}.",
                                     "已为您登记，参考号{ticket_no}。")},
            {"goto": "end"},
            {"id": "escalate", "transfer": {"queue": queue, "reason": sc.id}},
        ]
    elif sc.kind == "menu":
        steps = [
            {"id": "intro", "when": {"known_caller": False},
             "say": _t(f"Let's {x['en']}.", f"我们来{x['zh']}。")},
            {"id": "choose", "menu": {
                "say": _t("Press 1 to enter an amount, 2 to hear a summary, or 3 for a related service.",
                          "输入金额请按1，收听摘要请按2，相关服务请按3。"),
                "input": ["dtmf"], "slot": "choice",
                "no_input": {"retry": 1, "then": "agent"},
                "options": [
                    {"key": "1", "label": _t("amount", "金额"), "then": "amount", "value": "amount"},
                    {"key": "2", "label": _t("summary", "摘要"), "then": "summary", "value": "summary"},
                    {"key": "3", "label": _t("related service", "相关服务"), "then": sc.partner or "end"},
                ]}},
            {"id": "amount", "ask": {
                "slot": "amount", "input": ["dtmf"],
                "say": _t("Key in the amount, then press hash.", "请输入金额，以井号键结束。"),
                "validate": {"type": "amount", "min": 1, "max": 50000}}},
            {"id": "summary", "confirm": {
                "say": _t("You chose {choice} for {amount}. Press 1 to confirm, 2 to start again.",
                          "您选择了{choice}，金额{amount}。确认请按1，重新选择请按2。"),
                "slot": "confirmed", "yes": "finish", "no": "choose"}},
            {"id": "finish", "say": _t(f"Thank you, your request to {x['en']} is noted.",
                                       f"谢谢，您{x['zh']}的申请已记录。")},
            {"id": "flag_big", "when": {"slot": "amount", "gt": 1000}, "set": {"review": "yes"}},
            {"goto": "end"},
        ]
    elif sc.kind == "dated":
        steps = [
            {"id": "happened", "ask": {
                "slot": "happened", "input": ["dtmf"],
                "say": _t("Key in the date it happened, for example 2 0 2 4 0 1 1 5.",
                          "请输入发生日期，例如20240115。"),
                "validate": {"type": "date", "past": True}}},
            {"id": "by_lang", "branch": {"cases": [{"if": {"lang": "zh"}, "then": "note_zh"}],
                                         "else": "note_en"}},
            {"id": "note_en", "say": _t("Thanks, noted for {happened}.", "好的，日期{happened}已记录。")},
            {"goto": "file"},
            {"id": "note_zh", "say": _t("Noted: {happened}.", "已记录日期：{happened}。")},
            {"id": "file", "lookup": {"action": "complaints.file",
                                      "args": {"summary": sc.id + " {happened}"},
                                      "save_as": "case", "on_error": "escalate"}},
            {"id": "told", "say": _t("Your case number is {case.reference}.", "您的案件编号是{case.reference}。")},
            {"id": "more", "confirm": {"say": _t("Is that everything? Press 1 for yes, 2 for an agent.",
                                                 "请问还有其他问题吗？没有请按1，转人工请按2。"),
                                       "yes": "end", "no": "escalate"}},
            {"id": "escalate", "transfer": {"queue": queue, "reason": sc.id}},
        ]
    else:  # card
        steps = [
            {"id": "last4", "ask": {
                "slot": "card_last4", "input": ["dtmf"], "sensitive": True,
                "say": _t("Key in the last 4 digits of the card.", "请输入卡号后4位。"),
                "validate": {"type": "digits", "length": 4}}},
            {"id": "plan", "set": {"channel": "phone", "product": pslug}},
            {"id": "route", "branch": {"cases": [
                {"if": {"slot": "card_last4", "eq": "0000"}, "then": "emergency_stop"},
                {"if": {"all": [{"slot": "channel", "eq": "web"}, {"lang": "zh"}]}, "then": "zh_path"}]}},
            {"id": "dispatch", "lookup": {"action": "rescue.dispatch",
                                          "args": {"location": "{card_last4}"}, "save_as": "job"}},
            {"id": "eta", "say": _t("Reference {job.reference}; someone will call within {job.eta_minutes} minutes.",
                                    "参考号{job.reference}，我们将在{job.eta_minutes}分钟内回电。")},
            {"goto": sc.partner},
            {"id": "zh_path", "say": _t("Please use the app for this.", "请使用手机应用办理。")},
            {"goto": "end"},
            {"id": "emergency_stop", "emergency": {"kind": "fraud", "say": _t(
                "Connecting you to our fraud team now.", "正在为您转接反欺诈专线。")}},
        ]
    doc["steps"] = steps
    return doc


def _menu_prompt(labels: list) -> dict:
    en = ", ".join(f"{lab['en']} press {key}" for key, lab in labels)
    zh = "，".join(f"{lab['zh']}请按{key}" for key, lab in labels)
    return _t(f"For {en}.", f"{zh}。")


def _write_menus(root: Path, scenes: list) -> int:
    """main_menu -> 5 group menus -> product menus (pages of 8, key 9 = more) -> scenes."""
    by_product: dict[int, list[Scene]] = {}
    for s in scenes:
        by_product.setdefault(s.product, []).append(s)
    products = sorted(by_product)
    groups = [products[i:i + 5] for i in range(0, len(products), 5)]
    written = 0
    main_options = []
    for g, members in enumerate(groups):
        gid = f"group_{g + 1}"
        names = [PRODUCTS[p] for p in members]
        label = _t(" or ".join(n[1] for n in names[:2]) + (" and more" if len(names) > 2 else ""),
                   "、".join(n[2] for n in names[:2]) + ("等" if len(names) > 2 else ""))
        main_options.append({"key": str(g + 1), "label": label,
                             "words": {"en": [n[1] for n in names], "zh": [n[2] for n in names]},
                             "then": gid})
        options = []
        for i, p in enumerate(members):
            pslug, pen, pzh = PRODUCTS[p]
            options.append({"key": str(i + 1), "label": _t(pen, pzh), "then": f"{pslug}_menu_1"})
            pages = [by_product[p][j:j + 8] for j in range(0, len(by_product[p]), 8)]
            for n, page in enumerate(pages):
                popts = []
                for j, s in enumerate(page):
                    s.keys = [str(g + 1), str(i + 1)] + ["9"] * n + [str(j + 1)]
                    atitle = ACTIONS[s.action][1]
                    popts.append({"key": str(j + 1), "label": _t(atitle.lower(), s.x["zh"]), "then": s.id})
                if n + 1 < len(pages):
                    popts.append({"key": "9", "label": _t("more options", "更多选项"),
                                  "then": f"{pslug}_menu_{n + 2}"})
                _write(root / f"{pslug}_menu_{n + 1}.yaml", {
                    "id": f"{pslug}_menu_{n + 1}",
                    "title": _t(f"{pen} services, page {n + 1}", f"{pzh}服务第{n + 1}页"),
                    "steps": [{"id": "choose", "menu": {
                        "say": _menu_prompt([(o["key"], o["label"]) for o in popts]),
                        "options": popts}}]})
                written += 1
        _write(root / f"{gid}.yaml", {
            "id": gid, "title": _t(f"Product group {g + 1}", f"产品组{g + 1}"),
            "steps": [{"id": "choose", "menu": {
                "say": _menu_prompt([(o["key"], o["label"]) for o in options]), "options": options}}]})
        written += 1
    _write(root / "main_menu.yaml", {
        "id": "main_menu", "title": _t("Main menu", "主菜单"),
        "steps": [{"id": "choose", "menu": {
            "route": True,
            "say": _t("Please tell me briefly what you're calling about, or choose from the menu. "
                      + _menu_prompt([(o["key"], o["label"]) for o in main_options])["en"],
                      "请简单说出您要办理的业务，或按键选择。"
                      + _menu_prompt([(o["key"], o["label"]) for o in main_options])["zh"]),
            "options": main_options}}]})
    _write(root / "welcome.yaml", {
        "id": "welcome", "title": _t("Welcome", "欢迎"),
        "steps": [
            {"id": "closed_check", "branch": {"cases": [
                {"if": {"flag": "hotline.closed"}, "then": "closed"},
                {"if": {"flag": "hotline.maintenance"}, "then": "maintenance"}]}},
            {"id": "greet", "say": _t("Welcome to the benchmark hotline.", "欢迎致电测试热线。")},
            {"id": "likely_reason", "proactive": {"rules": [
                {"name": "open_claim", "if": {"profile": "open_claim", "exists": True},
                 "scene": scenes[0].id, "score": 0.9,
                 "say": _t("Are you calling about your claim? Press 1 for yes, 2 for no.",
                           "请问您是要查询理赔吗？是请按1，不是请按2。")}]}},
            {"goto": "main_menu"},
            {"id": "closed", "hangup": _t("We are closed. Goodbye.", "热线暂停服务，再见。")},
            {"id": "maintenance", "transfer": {"reason": "maintenance"}},
        ]})
    _write(root / "anything_else.yaml", {
        "id": "anything_else", "title": _t("Anything else", "其他需要"),
        "steps": [
            {"confirm": {"say": _t("Is there anything else? Press 1 for yes, or 2 for no.",
                                   "请问还有其他需要吗？有请按1，没有请按2。"),
                         "yes": "main_menu", "no": "bye", "no_input": {"retry": 0, "then": "bye"}}},
            {"id": "bye", "hangup": {}}]})
    return written + 3


def _hotline() -> dict:
    return {"hotline": {
        "entry": "welcome", "menu": "main_menu", "languages": ["en", "zh"], "default_language": "en",
        "agent_queue": "agents", "emergency_queue": "emergency", "on_scene_end": "anything_else",
        "timeouts": {"first_input": 6, "interdigit": 4, "speech": 10},
        "escapes": [
            {"name": "agent", "dtmf": "0", "then": "agent",
             "words": {"en": ["agent", "operator", "human"], "zh": ["人工", "转人工", "客服"]}},
            {"name": "repeat", "dtmf": "*", "then": "repeat",
             "words": {"en": ["repeat", "say that again"], "zh": ["重复", "再说一遍"]}}],
        "no_input": {"retry": 2, "then": "agent"},
        "no_match": {"retry": 2, "then": "agent"},
        "texts": {
            "no_input": _t("Sorry, I didn't hear anything.", "抱歉，没有听到您的声音。"),
            "no_match": _t("Sorry, I didn't catch that.", "抱歉，没有听清楚。"),
            "transfer": _t("Please hold while I connect you to an agent.", "正在为您转接人工服务，请稍候。"),
            "goodbye": _t("Thank you for calling. Goodbye.", "感谢您的来电，再见。"),
            "clarify": _t("Is this about {_a}, or {_b}? Press 1 for {_a}, or 2 for {_b}.",
                          "请问您是要办理{_a}，还是{_b}？{_a}请按1，{_b}请按2。")}}}


# --- measurements ------------------------------------------------------------------------
def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_1m_at_start": _load_avg(),
            "env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS",
                                               "OPENBLAS_NUM_THREADS") if k in os.environ}}


def _load_avg() -> float | None:
    """Other processes' CPU use skews every figure; the load average says how busy the box was."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _cpu_snapshot() -> tuple[float, float, float]:
    """(wall, busy CPU seconds of the whole box, this process's CPU seconds incl. children)."""
    busy = 0.0
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def _others(before: tuple[float, float, float]) -> float | None:
    """Cores' worth of CPU that other processes used meanwhile: contention skews every figure."""
    after = _cpu_snapshot()
    wall = after[0] - before[0]
    if wall <= 0 or not after[1]:
        return None
    return round(max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / wall, 2)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _ivr_command() -> list[str]:
    exe = REPO / ".venv" / "bin" / "ivr"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ivr"]


def bench_check(gen: Generated, runs: int) -> dict:
    cmd = _ivr_command() + ["check", str(gen.root)]
    times, codes, tail = [], [], ""
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        times.append(round(time.perf_counter() - start, 3))
        codes.append(proc.returncode)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
    median = statistics.median(times)
    files = len(list(gen.root.glob("*.yaml")))
    out = {"scenes": files - 1, "intent_scenes": len(gen.scenes), "menu_scenes": gen.menu_scenes,
           "files": files, "intent_examples": gen.examples, "command": "ivr check DIR (fresh process)",
           "seconds_median": median, "runs": times, "exit_codes": codes, "target_s": CHECK_TARGET_S,
           "pass": median < CHECK_TARGET_S and all(c == 0 for c in codes)}
    if tail:
        out["output_tail"] = tail
    return out


def _load(gen: Generated):
    from ivr.config import load_config
    from ivr.flow.loader import load_flows

    config = load_config(None)
    result = load_flows([str(gen.root)],
                        queues_conf=str(config.resolve(config.paths.dialplans) / "queues.conf"))
    if result.flowset is None:
        raise SystemExit("generated flows do not load:\n" + "\n".join(map(str, result.problems[:10])))
    return config, result.flowset


def _count_vectors(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(path)
        try:
            return db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def bench_routing(gen: Generated, config, flows, n_utterances: int, seed: int,
                  threads: int | None = None) -> dict:
    from ivr.nlu.embedder import E5Embedder
    from ivr.nlu.router import IntentRouter

    cache = REPO / "var" / "cache" / "bench-embeddings.sqlite"
    before = _count_vectors(cache)
    threads = threads or config.router.threads
    embedder = E5Embedder(cache, threads)
    router = IntentRouter(embedder, min_score=config.router.min_score,
                          clarify_margin=config.router.clarify_margin)
    start = time.perf_counter()
    index = router.scene_index(flows)
    build_s = time.perf_counter() - start
    embedded = _count_vectors(cache) - before
    rows = len(index.owner)

    pool = [(s.id, lang, text) for s in gen.scenes for lang, text in s.paraphrases]
    examples = {(lang, _norm(p)) for s in flows.scenes.values() for lang, ps in s.intents.items() for p in ps}
    pool = [u for u in pool if (u[1], _norm(u[2])) not in examples]
    rng = random.Random(seed + 1)
    utterances = rng.sample(pool, min(n_utterances, len(pool)))

    t0 = time.perf_counter()
    router.classify_scenes(flows, "warm up the model, please")  # loads the model if the cache was warm
    first_ms = (time.perf_counter() - t0) * 1000
    for _, _, text in utterances[:5]:
        router.classify_scenes(flows, text + " ")
    latencies, embed_ms, correct, matched = [], [], 0, 0
    per_lang: dict[str, list[int]] = {"en": [0, 0], "zh": [0, 0]}
    original = embedder.query

    def timed_query(text: str):  # the query embedding's share of each routing, measured inline
        t = time.perf_counter()
        try:
            return original(text)
        finally:
            embed_ms.append((time.perf_counter() - t) * 1000)

    embedder.query = timed_query
    try:
        for sid, lang, text in utterances:
            start = time.perf_counter()
            decision = router.classify_scenes(flows, text)
            latencies.append((time.perf_counter() - start) * 1000)
            hit = decision.best == sid
            correct += hit
            matched += hit and decision.kind == "match"
            per_lang[lang][0] += hit
            per_lang[lang][1] += 1
    finally:
        embedder.query = original
    rest_ms = [t - e for t, e in zip(latencies, embed_ms)]
    n = len(utterances)
    p95 = _pct(latencies, 0.95)
    return {
        "scenes": len(index.labels), "index_rows": rows, "utterances": n,
        "p50_ms": round(_pct(latencies, 0.5), 2), "p95_ms": round(p95, 2),
        "max_ms": round(max(latencies), 2), "mean_ms": round(statistics.fmean(latencies), 2),
        "breakdown_ms": {"query_embedding_p50": round(_pct(embed_ms, 0.5), 2),
                         "query_embedding_p95": round(_pct(embed_ms, 0.95), 2),
                         "scoring_p50": round(_pct(rest_ms, 0.5), 2),
                         "scoring_p95": round(_pct(rest_ms, 0.95), 2)},
        "first_query_ms": round(first_ms, 1),
        "index_build": {"seconds": round(build_s, 2), "rows": rows, "newly_embedded": embedded,
                        "cache_warm": embedded == 0, "cache": str(cache.relative_to(REPO))},
        "accuracy_top1": round(correct / n, 3), "accuracy_match": round(matched / n, 3),
        "accuracy_top1_by_lang": {k: round(v[0] / v[1], 3) for k, v in per_lang.items() if v[1]},
        "threads": threads, "target_ms": ROUTING_TARGET_MS, "pass": p95 < ROUTING_TARGET_MS,
    }


def _script_for(sc: Scene, by_id: dict, retry: bool) -> list:
    from ivr.sim import Action

    keys = list(sc.keys)
    inputs = {
        "ticket": (["123#"] if retry else []) + ["12345678"],
        "menu": ["1", "250#", "1"],
        "dated": ["20240115", "1"],
        "card": ["4321"],
    }[sc.kind]
    if sc.kind == "card" and sc.partner in by_id:
        inputs += ["20240115", "1"]  # the partner scene is a `dated` one
    return [Action("dtmf", k) for k in keys + inputs + ["2"]]


def bench_engine(gen: Generated, config, flows, n_calls: int) -> dict:
    from ivr import events as ev
    from ivr.app import build_services
    from ivr.nlu.router import IntentRouter
    from ivr.sim import Script, simulate

    services = build_services(config, router=IntentRouter(None))
    by_id = {s.id: s for s in gen.scenes}
    stride = 7 if len(gen.scenes) % 7 else 11
    plan = []
    for i in range(n_calls):
        sc = gen.scenes[(i * stride) % len(gen.scenes)]
        plan.append((sc, Script(f"call-{i}", _script_for(sc, by_id, retry=i % 5 == 0)),
                     "zh" if i % 2 else "en"))

    async def run(calls):
        results = []
        for sc, script, lang in calls:
            c0 = time.process_time()
            result = await simulate(flows, services, script, caller="", lang=lang)
            results.append((sc, result, time.process_time() - c0))
        return results

    asyncio.run(run(plan[: min(20, len(plan))]))  # warm-up: imports, regex caches
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results = asyncio.run(run(plan))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0

    steps = per_call_us = 0
    per_call, per_call_step_us, ok, kinds, outcomes = [], [], 0, {}, {}
    for sc, result, call_cpu in results:
        n = sum(1 for e in result.events if e.type == ev.EventType.STEP)
        steps += n
        per_call.append(call_cpu * 1e6)
        per_call_step_us.append(call_cpu * 1e6 / max(n, 1))
        for e in result.events:
            if e.type == ev.EventType.STEP:
                kinds[e.kind] = kinds.get(e.kind, 0) + 1
        outcomes[result.state.outcome] = outcomes.get(result.state.outcome, 0) + 1
        hung_up_by_ivr = any(isinstance(e, ev.Hangup) and e.by == "ivr" for e in result.events)
        ok += sc.id in result.state.scenes and hung_up_by_ivr and not any(
            isinstance(e, ev.Error) and e.code not in ("no-match",) for e in result.events)
    per_call_us = _pct(per_call, 0.5)
    us_per_step = cpu * 1e6 / max(steps, 1)
    return {
        "calls": len(results), "calls_as_scripted": ok, "steps": steps,
        "steps_per_call_mean": round(steps / max(len(results), 1), 1),
        "step_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])), "outcomes": outcomes,
        "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3),
        "us_per_step": round(us_per_step, 1),
        "us_per_step_p50_per_call": round(_pct(per_call_step_us, 0.5), 1),
        "us_per_call_p50": round(per_call_us, 1),
        "calls_per_second": round(len(results) / wall, 1) if wall else None,
        "note": "ivr.sim.simulate with SimChannel (keypad only); CPU includes the simulated channel",
        "target_us": ENGINE_TARGET_US, "pass": us_per_step < ENGINE_TARGET_US,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="ivr bench engine")
    parser.add_argument("--quick", action="store_true", help="fewer calls and utterances")
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--per-lang", type=int, default=5, help="examples per language per scene")
    parser.add_argument("--calls", type=int)
    parser.add_argument("--utterances", type=int)
    parser.add_argument("--runs", type=int, default=3, help="ivr check runs (median)")
    parser.add_argument("--threads", type=int, help="e5 threads (default: config router.threads)")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--keep", action="store_true", help="keep the generated flows folder")
    parser.add_argument("--skip", default="", help="comma list of check,routing,engine")
    parser.add_argument("--json", action="store_true", help="accepted; the output is always JSON")
    args = parser.parse_args([a for a in (argv or []) if a != "--"])
    n_calls = args.calls or (300 if args.quick else 2000)
    n_utt = args.utterances or (200 if args.quick else 400)
    skip = set(filter(None, args.skip.split(",")))

    root = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    flows_dir = root / "flows"
    out: dict = {"machine": machine()}
    try:
        t0 = time.perf_counter()
        gen = generate(flows_dir, args.scenes, args.per_lang, args.seed)
        out["generated"] = {"seconds": round(time.perf_counter() - t0, 2), "seed": args.seed,
                            "dir": str(flows_dir) if args.keep else "(temporary, removed)"}
        if "check" not in skip:
            snap = _cpu_snapshot()
            out["check"] = bench_check(gen, args.runs)
            out["check"]["other_processes_cpu_cores"] = _others(snap)
        if not skip >= {"routing", "engine"}:
            config, flows = _load(gen)
        if "routing" not in skip:
            snap = _cpu_snapshot()
            out["routing"] = bench_routing(gen, config, flows, n_utt, args.seed, args.threads)
            out["routing"]["other_processes_cpu_cores"] = _others(snap)
        if "engine" not in skip:
            snap = _cpu_snapshot()
            out["engine"] = bench_engine(gen, config, flows, n_calls)
            out["engine"]["other_processes_cpu_cores"] = _others(snap)
        out["machine"]["load_avg_1m_at_end"] = _load_avg()
        return out
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(main(sys.argv[1:]), indent=2, ensure_ascii=False))
