"""The visual page's words in English and Mandarin, and its policies/cards/claims section."""

from __future__ import annotations

from typing import Any

from ivr.web import pages
from ivr.web.pages import Markup, esc

TEXT: dict[str, dict[str, str]] = {
    "continue_title": {"en": "Your call with Harbor Financial", "zh": "您与港湾金融的通话"},
    "continue_text": {"en": "Open a live view of the call you are on: what we said, the options as buttons, and a keypad.",
                      "zh": "打开本次通话的实时页面：通话内容、可点选的菜单和数字键盘。"},
    "continue": {"en": "Continue", "zh": "继续"},
    "page_title": {"en": "Your call", "zh": "您的通话"},
    "transcript": {"en": "What was said", "zh": "通话内容"},
    "choices": {"en": "Choose", "zh": "请选择"},
    "keypad": {"en": "Keypad", "zh": "数字键盘"},
    "delete": {"en": "Delete", "zh": "删除"},
    "submit": {"en": "Send", "zh": "提交"},
    "verify_title": {"en": "Verify it's you", "zh": "身份验证"},
    "verify_text": {"en": "This text message went to the number we have on file. Confirm one more detail to see your policies and cards.",
                    "zh": "短信已发送至您预留的手机号码。请再确认一项信息，即可查看您的保单和卡片。"},
    "dob": {"en": "Date of birth (YYYY-MM-DD)", "zh": "出生日期（年-月-日）"},
    "id_last4": {"en": "Last 4 characters of your ID", "zh": "证件号码后四位"},
    "answer": {"en": "Your answer", "zh": "您的答案"},
    "verify": {"en": "Verify", "zh": "验证"},
    "code_title": {"en": "Or get a code by text", "zh": "或通过短信获取验证码"},
    "code_text": {"en": "Opened this page on another device? We can text a 6-digit code to the number we have on file.",
                  "zh": "在其他设备上打开了本页面？我们可以向您预留的手机号码发送6位验证码。"},
    "send_code": {"en": "Text me a code", "zh": "发送验证码"},
    "send_again": {"en": "Send a new code", "zh": "重新发送验证码"},
    "verify_code": {"en": "Verify code", "zh": "提交验证码"},
    "code_label": {"en": "6-digit code sent to {number}", "zh": "发送至{number}的6位验证码"},
    "code_sent": {"en": "We texted you a code. It is good for 5 minutes, once.",
                  "zh": "验证码已发送，5分钟内有效，仅可使用一次。"},
    "code_failed": {"en": "That code is not right, or it has expired.", "zh": "验证码错误或已过期。"},
    "otp_limit": {"en": "No more codes can be sent on this call. Use your date of birth or ID instead.",
                  "zh": "本次通话无法再发送验证码，请改用出生日期或证件号码验证。"},
    "otp_no_number": {"en": "We have no number on file to text a code to.",
                      "zh": "我们没有您预留的手机号码，无法发送验证码。"},
    "connecting": {"en": "Connecting…", "zh": "正在连接…"},
    "live": {"en": "Live", "zh": "实时"},
    "reconnecting": {"en": "Connection lost, reconnecting…", "zh": "连接中断，正在重新连接…"},
    "ivr": {"en": "Harbor", "zh": "港湾"},
    "you": {"en": "You", "zh": "您"},
    "ended_hangup": {"en": "This call has ended. Thank you.", "zh": "本次通话已结束，谢谢。"},
    "ended_transfer": {"en": "You are being connected to an agent. This page has ended.",
                       "zh": "正在为您转接人工服务，本页面已结束。"},
    "digits": {"en": "digits", "zh": "位数字"},
    "tapped": {"en": "Sent to your call.", "zh": "已发送到通话。"},
    "refused": {"en": "That could not be sent.", "zh": "无法发送。"},
    "verified_now": {"en": "Thank you, you are verified.", "zh": "谢谢，身份验证已通过。"},
    "verify_failed": {"en": "That doesn't match our records.", "zh": "与我们的记录不符。"},
    "holdings": {"en": "Your policies and cards", "zh": "您的保单和卡片"},
    "policies": {"en": "Policies", "zh": "保单"},
    "claims": {"en": "Claims", "zh": "理赔"},
    "cards": {"en": "Cards", "zh": "信用卡"},
    "none": {"en": "None on file.", "zh": "暂无记录。"},
    "ended_title": {"en": "Call ended", "zh": "通话已结束"},
    "ended": {"en": "The call this page belonged to has ended.", "zh": "此页面所属的通话已经结束。"},
    "expired_title": {"en": "Link expired", "zh": "链接已过期"},
    "expired": {"en": "This link has expired. Ask for a new one during your call.", "zh": "链接已过期，请在通话中重新获取。"},
    "spent_title": {"en": "Link already used", "zh": "链接已使用"},
    "spent": {"en": "This link has been used already. Each link opens once.", "zh": "此链接已被使用，每个链接只能打开一次。"},
    "unknown_title": {"en": "Link not valid", "zh": "链接无效"},
    "unknown": {"en": "This link is not valid.", "zh": "此链接无效。"},
    "no_visit_title": {"en": "Open your link", "zh": "请打开短信链接"},
    "no_visit": {"en": "Open the link in the text message we sent during your call.", "zh": "请打开通话中我们发送的短信链接。"},
    "csrf_title": {"en": "Not allowed", "zh": "不允许"},
    "csrf": {"en": "This form has expired. Go back and try again.", "zh": "表单已失效，请返回重试。"},
    "too_many_title": {"en": "Too many tries", "zh": "尝试次数过多"},
    "too_many": {"en": "Too many tries. Wait a few minutes, or verify with the agent on the call.",
                 "zh": "尝试次数过多，请稍后再试，或在通话中完成验证。"},
}
PRODUCTS = {"car": {"en": "Car insurance", "zh": "车险"}, "home": {"en": "Home insurance", "zh": "家财险"},
            "life": {"en": "Life insurance", "zh": "寿险"}, "health": {"en": "Health insurance", "zh": "健康险"}}
STATUS = {"active": {"en": "active", "zh": "有效"}, "lapsed": {"en": "lapsed", "zh": "已失效"},
          "blocked": {"en": "blocked", "zh": "已冻结"}, "reported": {"en": "reported", "zh": "已报案"},
          "under_review": {"en": "under review", "zh": "审核中"}, "approved": {"en": "approved", "zh": "已核准"},
          "paid": {"en": "paid", "zh": "已赔付"}, "rejected": {"en": "declined", "zh": "未予赔付"}}
LABELS = {"renewal_due": {"en": "Renewal due", "zh": "续保日期"}, "premium": {"en": "Premium", "zh": "保费"},
          "opened": {"en": "Reported", "zh": "报案日期"}, "policy": {"en": "Policy", "zh": "保单"},
          "statement_due": {"en": "Payment due", "zh": "还款日"}, "balance": {"en": "Balance", "zh": "账单金额"},
          "min_payment": {"en": "Minimum payment", "zh": "最低还款"}}


def t(lang: str, key: str) -> str:
    entry = TEXT.get(key, {})
    return entry.get(lang) or entry.get("en", key)


def _word(table: dict, value: Any, lang: str) -> str:
    return table.get(str(value), {}).get(lang, str(value))


def _item(lang: str, title: str, status: str, details: list[tuple[str, Any]]) -> Markup:
    rows = "".join(f"<dt>{esc(_word(LABELS, k, lang))}</dt><dd>{esc(v)}</dd>" for k, v in details if v not in (None, ""))
    return Markup(f'<li><details><summary><span class="what">{esc(title)}</span> '
                  f'<span class="status">{esc(_word(STATUS, status, lang))}</span></summary>'
                  f"<dl>{rows}</dl></details></li>")


def holdings_html(lang: str, profile: dict[str, Any]) -> Markup:
    """The verified caller's policies, claims and cards; each tappable for its details. Card
    numbers show their last 4 digits only."""
    def block(key: str, items: list[Markup]) -> str:
        inner = "".join(items) or f'<li class="muted">{esc(t(lang, "none"))}</li>'
        return f'<h3>{esc(t(lang, key))}</h3><ul class="holdings">{inner}</ul>'

    policies = [_item(lang, f"{_word(PRODUCTS, p.get('product'), lang)} {p.get('number', '')}", p.get("status", ""),
                      [("renewal_due", p.get("renewal_due")), ("premium", p.get("premium"))])
                for p in profile.get("policies") or []]
    claims = [_item(lang, f"{t(lang, 'claims')} {c.get('number', '')}", c.get("status", ""),
                    [("opened", c.get("opened")), ("policy", c.get("policy"))])
              for c in profile.get("claims") or []]
    cards = [_item(lang, f"•••• {c.get('last4', '')}", c.get("status", ""),
                   [("statement_due", c.get("statement_due")), ("balance", c.get("balance")),
                    ("min_payment", c.get("min_payment"))])
             for c in profile.get("cards") or []]
    return pages.render("visual_holdings.html", title=t(lang, "holdings"),
                        content=Markup(block("policies", policies) + block("claims", claims) + block("cards", cards)))
