"""The visual page's verification section: the knowledge-factor form and, when the page can
text codes (ivr.verification.OneTimeCodes), "Text me a code" and the code's own form. Both are
plain forms: they work without JavaScript."""

from __future__ import annotations

from ivr.privacy import mask_phone
from ivr.verification import Claimant, Methods
from ivr.web import pages
from ivr.web.pages import Markup, esc
from ivr.web.visual_text import t


def verify_section(lang: str, csrf: str, methods: Methods, claimant: Claimant) -> Markup:
    return pages.render("visual_verify.html", title=t(lang, "verify_title"), text=t(lang, "verify_text"),
                        csrf=csrf, dob=t(lang, "dob"), id_last4=t(lang, "id_last4"),
                        answer=t(lang, "answer"), button=t(lang, "verify"),
                        code=_code_part(lang, csrf, methods, claimant))


def _code_part(lang: str, csrf: str, methods: Methods, claimant: Claimant) -> Markup:
    codes = methods.get("otp")
    number = claimant.number_on_file
    if codes is None or not number:
        return Markup("")
    waiting = codes.waiting(claimant.call_id)
    entry = pages.render("visual_code_entry.html", csrf=csrf, button=t(lang, "verify_code"),
                         label=t(lang, "code_label").format(number=mask_phone(number))) if waiting else ""
    if codes.can_send(claimant.call_id):
        send = pages.render("visual_code_send.html", csrf=csrf,
                            button=t(lang, "send_again" if waiting else "send_code"))
    else:
        send = Markup(f'<p class="muted">{esc(t(lang, "otp_limit"))}</p>')
    return pages.render("visual_code.html", title=t(lang, "code_title"), text=t(lang, "code_text"),
                        entry=entry, send=send)
