"""What the requester is told at each step, in their language (zh-CN, en).

Each template has an e-mail subject and body and a short SMS text. Parameters:
`ref` (the short ticket number), `subject` (the ticket's subject) and `text`
(the agent's message, reply or resolution).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    subject: str
    body: str
    sms: str


_ZH_SIGN = (
    "\n\n—— Casemesh 自助服务中心（7×24 小时）\n此邮件由系统发送，请直接在应用内的工单页面回复。"
)
_EN_SIGN = (
    "\n\n— Casemesh Self-Service Centre (24/7)\n"
    "This message was sent automatically; please reply from the ticket page in the app."
)

TEMPLATES: dict[tuple[str, str], Template] = {
    ("ticket.received", "zh-CN"): Template(
        "【工单已受理】{ref}：{subject}",
        "您好：\n\n我们已收到您的工单“{subject}”（编号 {ref}），客服将尽快处理。"
        "处理进展会通过您选择的方式通知您，您也可以随时在“我的工单”中查看。" + _ZH_SIGN,
        "【Casemesh】您的工单{ref}已受理，我们会尽快处理，进展将另行通知。",
    ),
    ("ticket.received", "en"): Template(
        "We received your ticket {ref}: {subject}",
        'Hello,\n\nWe have received your ticket "{subject}" (number {ref}). An agent will '
        "look at it soon. We will tell you about every step, and you can follow it any time "
        "under My tickets." + _EN_SIGN,
        "Casemesh: we received your ticket {ref} and will tell you about every step.",
    ),
    ("ticket.info_requested", "zh-CN"): Template(
        "【需要您补充信息】工单 {ref}",
        "您好：\n\n为处理您的工单“{subject}”（编号 {ref}），客服需要您补充以下信息：\n\n{text}\n\n"
        "请在“我的工单”中回复，我们收到后会继续处理。" + _ZH_SIGN,
        "【Casemesh】工单{ref}需要您补充信息，请在“我的工单”中查看并回复。",
    ),
    ("ticket.info_requested", "en"): Template(
        "We need more information: ticket {ref}",
        'Hello,\n\nTo work on your ticket "{subject}" (number {ref}) we need the following '
        "from you:\n\n{text}\n\nPlease reply from My tickets and we will carry on." + _EN_SIGN,
        "Casemesh: ticket {ref} needs more information from you. Please reply in My tickets.",
    ),
    ("ticket.agent_reply", "zh-CN"): Template(
        "【客服回复】工单 {ref}",
        "您好：\n\n客服回复了您的工单“{subject}”（编号 {ref}）：\n\n{text}" + _ZH_SIGN,
        "【Casemesh】客服回复了您的工单{ref}，请在“我的工单”中查看。",
    ),
    ("ticket.agent_reply", "en"): Template(
        "New reply on ticket {ref}",
        'Hello,\n\nAn agent replied on your ticket "{subject}" (number {ref}):\n\n{text}'
        + _EN_SIGN,
        "Casemesh: an agent replied on ticket {ref}. See My tickets.",
    ),
    ("ticket.solved", "zh-CN"): Template(
        "【问题已解决】工单 {ref}",
        "您好：\n\n您的工单“{subject}”（编号 {ref}）已处理完成：\n\n{text}\n\n"
        "如果问题仍未解决，直接回复即可重新打开工单；也欢迎您为本次服务评分。" + _ZH_SIGN,
        "【Casemesh】您的工单{ref}已解决。如仍有问题，可在“我的工单”中回复重新打开。",
    ),
    ("ticket.solved", "en"): Template(
        "Solved: ticket {ref}",
        'Hello,\n\nYour ticket "{subject}" (number {ref}) has been solved:\n\n{text}\n\n'
        "If the problem is still there, just reply to reopen it. We would also welcome your "
        "rating." + _EN_SIGN,
        "Casemesh: ticket {ref} is solved. Reply in My tickets if you still need help.",
    ),
    ("ticket.reopened", "zh-CN"): Template(
        "【工单已重新打开】{ref}",
        "您好：\n\n您的工单“{subject}”（编号 {ref}）已重新打开，客服会继续跟进。" + _ZH_SIGN,
        "【Casemesh】您的工单{ref}已重新打开，客服会继续跟进。",
    ),
    ("ticket.reopened", "en"): Template(
        "Reopened: ticket {ref}",
        'Hello,\n\nYour ticket "{subject}" (number {ref}) is open again and an agent will '
        "follow it up." + _EN_SIGN,
        "Casemesh: ticket {ref} is open again; an agent will follow it up.",
    ),
    ("ticket.closed", "zh-CN"): Template(
        "【工单已关闭】{ref}",
        "您好：\n\n您的工单“{subject}”（编号 {ref}）已关闭。"
        "如有新的问题，欢迎在自助服务中心提交新工单。" + _ZH_SIGN,
        "【Casemesh】您的工单{ref}已关闭，感谢您的耐心。",
    ),
    ("ticket.closed", "en"): Template(
        "Closed: ticket {ref}",
        'Hello,\n\nYour ticket "{subject}" (number {ref}) is now closed. For anything new, '
        "open a new ticket in the Self-Service Centre." + _EN_SIGN,
        "Casemesh: ticket {ref} is closed. Thank you for your patience.",
    ),
}

DEFAULT_LOCALE = "en"


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    sms: str


def render(template: str, locale: str, **params: str) -> Rendered:
    t = TEMPLATES.get((template, locale)) or TEMPLATES[(template, DEFAULT_LOCALE)]
    return Rendered(
        subject=t.subject.format(**params),
        body=t.body.format(**params),
        sms=t.sms.format(**params),
    )
