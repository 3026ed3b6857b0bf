"""What the requester is told at each step, in their language (zh-CN, en).

Each template has an e-mail subject and body and a short SMS text. Parameters:
`ref` (the short case number), `subject` (the case's subject), `text` (the
agent's message, reply, resolution or reasons) and `due` (the next step's date).
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

# Copyright cases. `due` is the date of the next step, in the party's reading.
TEMPLATES.update(
    {
        ("appeal.received", "zh-CN"): Template(
            "【版权案件已受理】{ref}：{subject}",
            "您好：\n\n我们已收到您的版权案件（编号 {ref}），将在 {due}前完成审核，"
            "处理进展会及时通知您。" + _ZH_SIGN,
            "【Casemesh】版权案件{ref}已受理，预计{due}前完成审核。",
        ),
        ("appeal.received", "en"): Template(
            "We received your copyright case {ref}: {subject}",
            "Hello,\n\nWe have received your copyright case (number {ref}). We will review it "
            "by {due} and tell you about every step." + _EN_SIGN,
            "Casemesh: copyright case {ref} received; review by {due}.",
        ),
        ("appeal.info_requested", "zh-CN"): Template(
            "【需要补充材料】版权案件 {ref}",
            "您好：\n\n为处理您的版权案件（编号 {ref}），请在 {due}前补充以下内容：\n\n{text}\n\n"
            "逾期未补充，案件将被关闭。" + _ZH_SIGN,
            "【Casemesh】版权案件{ref}需补充材料，请于{due}前提交。",
        ),
        ("appeal.info_requested", "en"): Template(
            "More information needed: copyright case {ref}",
            "Hello,\n\nTo handle your copyright case (number {ref}) we need the following by "
            "{due}:\n\n{text}\n\nWithout it the case will be closed." + _EN_SIGN,
            "Casemesh: copyright case {ref} needs more information by {due}.",
        ),
        ("appeal.upheld", "zh-CN"): Template(
            "【处理结果】版权案件 {ref}：投诉成立",
            "您好：\n\n您的版权案件（编号 {ref}）经审核成立，理由如下：\n\n{text}\n\n"
            "如有异议，可在 {due}前申诉。" + _ZH_SIGN,
            "【Casemesh】版权案件{ref}已审核：成立。详情见邮件或应用内通知。",
        ),
        ("appeal.upheld", "en"): Template(
            "Decision: copyright case {ref} upheld",
            "Hello,\n\nYour copyright case (number {ref}) was upheld, for these reasons:\n\n"
            "{text}\n\nYou may appeal until {due}." + _EN_SIGN,
            "Casemesh: copyright case {ref} was upheld. Details in the app.",
        ),
        ("appeal.rejected", "zh-CN"): Template(
            "【处理结果】版权案件 {ref}：未予支持",
            "您好：\n\n您的版权案件（编号 {ref}）经审核未予支持，理由如下：\n\n{text}\n\n"
            "如有异议，可在 {due}前申诉。" + _ZH_SIGN,
            "【Casemesh】版权案件{ref}已审核：未予支持。可于{due}前申诉。",
        ),
        ("appeal.rejected", "en"): Template(
            "Decision: copyright case {ref} not upheld",
            "Hello,\n\nYour copyright case (number {ref}) was not upheld, for these reasons:\n\n"
            "{text}\n\nYou may appeal until {due}." + _EN_SIGN,
            "Casemesh: copyright case {ref} was not upheld. Appeal by {due}.",
        ),
        ("appeal.content_removed", "zh-CN"): Template(
            "【内容已处理】版权投诉 {ref}",
            "您好：\n\n您发布的内容因版权投诉（编号 {ref}）已被处理，理由如下：\n\n{text}\n\n"
            "如认为处理有误，可在 {due}前提交反通知或申诉。" + _ZH_SIGN,
            "【Casemesh】您的内容因版权投诉{ref}被处理，可于{due}前提交反通知。",
        ),
        ("appeal.content_removed", "en"): Template(
            "Your content was removed: copyright notice {ref}",
            "Hello,\n\nContent you posted was removed after a copyright notice (number {ref}), "
            "for these reasons:\n\n{text}\n\nIf this is a mistake, send a counter-notice or "
            "appeal by {due}." + _EN_SIGN,
            "Casemesh: your content was removed (notice {ref}). Counter-notice by {due}.",
        ),
        ("appeal.counter_notice_received", "zh-CN"): Template(
            "【收到反通知】版权案件 {ref}",
            "您好：\n\n被投诉人对版权案件（编号 {ref}）提交了反通知：\n\n{text}\n\n"
            "如您已就此提起诉讼，请在 {due}前告知我们；否则相关内容将于该日恢复。" + _ZH_SIGN,
            "【Casemesh】案件{ref}收到反通知，如已起诉请于{due}前告知。",
        ),
        ("appeal.counter_notice_received", "en"): Template(
            "Counter-notice received: copyright case {ref}",
            "Hello,\n\nThe uploader sent a counter-notice in copyright case {ref}:\n\n{text}\n\n"
            "If you have taken court action, tell us by {due}; otherwise the content will be "
            "restored then." + _EN_SIGN,
            "Casemesh: counter-notice in case {ref}. Report court action by {due}.",
        ),
        ("appeal.counter_notice_forwarded", "zh-CN"): Template(
            "【反通知已转送】版权案件 {ref}",
            "您好：\n\n您的反通知（案件编号 {ref}）已转送投诉人。如投诉人未在 {due}前告知已采取"
            "法律行动，您的内容将被恢复。" + _ZH_SIGN,
            "【Casemesh】反通知已转送（案件{ref}），如无诉讼，内容将于{due}恢复。",
        ),
        ("appeal.counter_notice_forwarded", "en"): Template(
            "Counter-notice forwarded: copyright case {ref}",
            "Hello,\n\nYour counter-notice (case {ref}) was forwarded to the claimant. Unless they "
            "report court action by {due}, your content will be restored." + _EN_SIGN,
            "Casemesh: counter-notice forwarded (case {ref}); restore on {due} unless sued.",
        ),
        ("appeal.restored", "zh-CN"): Template(
            "【内容已恢复】版权案件 {ref}",
            "您好：\n\n反通知期限已过，投诉人未告知已采取法律行动，版权案件（编号 {ref}）"
            "涉及的内容已恢复。" + _ZH_SIGN,
            "【Casemesh】版权案件{ref}涉及的内容已恢复。",
        ),
        ("appeal.restored", "en"): Template(
            "Content restored: copyright case {ref}",
            "Hello,\n\nThe counter-notice period has passed without a report of court action; "
            "the content in copyright case {ref} has been restored." + _EN_SIGN,
            "Casemesh: the content in copyright case {ref} was restored.",
        ),
        ("appeal.held", "zh-CN"): Template(
            "【内容保持下架】版权案件 {ref}",
            "您好：\n\n投诉人已在期限内告知已采取法律行动，版权案件（编号 {ref}）涉及的内容"
            "在诉讼期间保持下架。" + _ZH_SIGN,
            "【Casemesh】案件{ref}已有诉讼，内容保持下架。",
        ),
        ("appeal.held", "en"): Template(
            "Content stays down: copyright case {ref}",
            "Hello,\n\nThe claimant reported court action in time; the content in copyright case "
            "{ref} stays down while the court decides." + _EN_SIGN,
            "Casemesh: court action in case {ref}; the content stays down.",
        ),
        ("appeal.abandoned", "zh-CN"): Template(
            "【案件已关闭】版权案件 {ref}",
            "您好：\n\n由于未在期限内收到补充材料，版权案件（编号 {ref}）已关闭。"
            "如需继续，请重新提交。" + _ZH_SIGN,
            "【Casemesh】版权案件{ref}因未补充材料已关闭。",
        ),
        ("appeal.abandoned", "en"): Template(
            "Closed: copyright case {ref}",
            "Hello,\n\nWe did not receive the information needed in time, so copyright case "
            "{ref} is closed. You may file it again." + _EN_SIGN,
            "Casemesh: copyright case {ref} was closed for lack of information.",
        ),
    }
)

# Abuse reports. The reporter hears of receipt and of the outcome (DSA Art. 16);
# the affected uploader receives the statement of reasons (Art. 17); a reporter
# who misuses reporting is warned, then suspended (Art. 23).
TEMPLATES.update(
    {
        ("report.received", "zh-CN"): Template(
            "【举报已收到】{ref}：{subject}",
            "您好：\n\n我们已收到您对“{subject}”的举报（编号 {ref}），审核人员会尽快处理，"
            "处理结果将通知您。感谢您帮助维护社区环境。" + _ZH_SIGN,
            "【Casemesh】您的举报{ref}已收到，处理结果将通知您。",
        ),
        ("report.received", "en"): Template(
            "We received your report {ref}: {subject}",
            'Hello,\n\nWe have received your report about "{subject}" (number {ref}). A '
            "reviewer will look at it soon and we will tell you the outcome. Thank you for "
            "helping keep the community safe." + _EN_SIGN,
            "Casemesh: we received your report {ref} and will tell you the outcome.",
        ),
        ("report.action_taken", "zh-CN"): Template(
            "【举报处理结果】{ref}：已处理",
            "您好：\n\n您对“{subject}”的举报（编号 {ref}）经审核成立，平台已采取措施：\n\n"
            "{text}\n\n如对结果有异议，可在 {due}前申诉。" + _ZH_SIGN,
            "【Casemesh】您的举报{ref}经审核成立，已处理。",
        ),
        ("report.action_taken", "en"): Template(
            "Outcome of your report {ref}: action taken",
            'Hello,\n\nYour report about "{subject}" (number {ref}) was upheld and we took '
            "action:\n\n{text}\n\nYou may appeal this decision until {due}." + _EN_SIGN,
            "Casemesh: your report {ref} was upheld and action was taken.",
        ),
        ("report.no_violation", "zh-CN"): Template(
            "【举报处理结果】{ref}：未发现违规",
            "您好：\n\n您对“{subject}”的举报（编号 {ref}）经审核，未发现违反法律或社区规范的"
            "情况：\n\n{text}\n\n如对结果有异议，可在 {due}前申诉。" + _ZH_SIGN,
            "【Casemesh】您的举报{ref}经审核未发现违规，可于{due}前申诉。",
        ),
        ("report.no_violation", "en"): Template(
            "Outcome of your report {ref}: no violation found",
            'Hello,\n\nWe reviewed your report about "{subject}" (number {ref}) and found no '
            "breach of the law or our rules:\n\n{text}\n\nYou may appeal this decision until "
            "{due}." + _EN_SIGN,
            "Casemesh: no violation found for report {ref}. Appeal by {due}.",
        ),
        ("report.unfounded", "zh-CN"): Template(
            "【举报处理结果】{ref}：举报明显不成立",
            "您好：\n\n您对“{subject}”的举报（编号 {ref}）经审核明显不成立：\n\n{text}\n\n"
            "请仅在确有违规时举报；多次提交明显不成立的举报，将被暂停举报功能。"
            "如对结果有异议，可在 {due}前申诉。" + _ZH_SIGN,
            "【Casemesh】您的举报{ref}明显不成立。多次不实举报将被暂停举报功能。",
        ),
        ("report.unfounded", "en"): Template(
            "Outcome of your report {ref}: manifestly unfounded",
            'Hello,\n\nWe reviewed your report about "{subject}" (number {ref}) and found it '
            "manifestly unfounded:\n\n{text}\n\nPlease report only real violations: repeated "
            "unfounded reports lead to a suspension of reporting. You may appeal until {due}."
            + _EN_SIGN,
            "Casemesh: report {ref} was manifestly unfounded. Repeated ones suspend reporting.",
        ),
        ("report.void", "zh-CN"): Template(
            "【举报已结束】{ref}：内容已不存在",
            "您好：\n\n您举报的“{subject}”（编号 {ref}）在审核期间已被删除，举报已结束。"
            + _ZH_SIGN,
            "【Casemesh】您举报的内容已不存在，举报{ref}已结束。",
        ),
        ("report.void", "en"): Template(
            "Report {ref} closed: the content is gone",
            'Hello,\n\n"{subject}", which you reported (number {ref}), was deleted while we '
            "reviewed it, so the report is closed." + _EN_SIGN,
            "Casemesh: the content you reported is gone; report {ref} is closed.",
        ),
        ("report.reversed", "zh-CN"): Template(
            "【申诉结果】举报 {ref} 的处理决定已改变",
            "您好：\n\n经申诉复核，对“{subject}”的处理决定（举报编号 {ref}）已被撤销。"
            "如原决定为“未发现违规”，该内容将重新审核，结果会再通知您。" + _ZH_SIGN,
            "【Casemesh】举报{ref}的处理决定经申诉已改变。",
        ),
        ("report.reversed", "en"): Template(
            "Report {ref}: the decision was reversed on appeal",
            'Hello,\n\nOn appeal, the decision about "{subject}" (report {ref}) was reversed. '
            "If it had found no violation, the content is reviewed again and we will tell you "
            "the outcome." + _EN_SIGN,
            "Casemesh: the decision on report {ref} was reversed on appeal.",
        ),
        ("report.statement", "zh-CN"): Template(
            "【处理决定及理由】您的内容 {subject}",
            "您好：\n\n您发布的内容（{subject}）因用户举报经人工审核，平台作出以下决定"
            "（案件编号 {ref}）：\n\n{text}\n\n如认为决定有误，可在 {due}前通过“我的申诉”提交申诉。"
            + _ZH_SIGN,
            "【Casemesh】您的内容{subject}因违规被处理（案件{ref}），理由已发送至邮箱，可于{due}前申诉。",
        ),
        ("report.statement", "en"): Template(
            "Statement of reasons: your content {subject}",
            "Hello,\n\nAfter reports from users and review, we took the following decision "
            "about your content ({subject}, case {ref}):\n\n{text}\n\nIf you think this is "
            "wrong, you may appeal until {due} from My appeals." + _EN_SIGN,
            "Casemesh: action on your content {subject} (case {ref}). Appeal by {due}.",
        ),
        ("report.restriction_lifted", "zh-CN"): Template(
            "【申诉成功】您的内容 {subject} 已恢复",
            "您好：\n\n经申诉复核，对您的内容（{subject}，案件编号 {ref}）的处理决定已撤销，"
            "相关限制已解除：\n\n{text}" + _ZH_SIGN,
            "【Casemesh】申诉成功（案件{ref}），您的内容{subject}的限制已解除。",
        ),
        ("report.restriction_lifted", "en"): Template(
            "Appeal upheld: restrictions on {subject} lifted",
            "Hello,\n\nOn appeal, the decision about your content ({subject}, case {ref}) was "
            "reversed and these restrictions were lifted:\n\n{text}" + _EN_SIGN,
            "Casemesh: appeal upheld (case {ref}); restrictions on {subject} lifted.",
        ),
        ("report.misuse_warning", "zh-CN"): Template(
            "【提醒】请勿提交不实举报",
            "您好：\n\n您近期提交的多条举报经审核明显不成立。举报功能用于处理真实的违规内容，"
            "如继续提交明显不成立的举报，您的举报功能将被暂停一段时间。（提醒编号 {ref}）"
            + _ZH_SIGN,
            "【Casemesh】您近期多条举报明显不成立，继续提交将被暂停举报功能（{ref}）。",
        ),
        ("report.misuse_warning", "en"): Template(
            "A warning about your reports",
            "Hello,\n\nSeveral of your recent reports were manifestly unfounded. Reporting "
            "exists for real violations; if you keep sending unfounded reports, you will not "
            "be able to report for a while. (Reference {ref})" + _EN_SIGN,
            "Casemesh: several of your reports were unfounded. More will suspend reporting. "
            "Ref {ref}",
        ),
        ("report.suspension_lifted", "zh-CN"): Template(
            "【举报功能已恢复】",
            "您好：\n\n经申诉复核，此前被认定为不实的举报已不再计入，您的举报功能已恢复"
            "（编号 {ref}）。感谢您的耐心。" + _ZH_SIGN,
            "【Casemesh】经申诉复核，您的举报功能已恢复（{ref}）。",
        ),
        ("report.suspension_lifted", "en"): Template(
            "You can report again",
            "Hello,\n\nOn appeal, a report that had counted as unfounded no longer counts, so "
            "your reporting suspension has ended (reference {ref}). Thank you for your patience."
            + _EN_SIGN,
            "Casemesh: on appeal, your reporting suspension has ended. Ref {ref}",
        ),
        ("report.reporting_suspended", "zh-CN"): Template(
            "【举报功能已暂停】至 {due}",
            "您好：\n\n在收到提醒后，您仍多次提交明显不成立的举报，您的举报功能已暂停至 {due}。"
            "期间提交的举报将不被受理；到期后自动恢复。"
            "如有异议，可通过“我的工单”联系我们（编号 {ref}）。" + _ZH_SIGN,
            "【Casemesh】因多次不实举报，您的举报功能暂停至{due}（{ref}）。",
        ),
        ("report.reporting_suspended", "en"): Template(
            "Reporting suspended until {due}",
            "Hello,\n\nAfter a warning you kept sending manifestly unfounded reports, so you "
            "cannot report until {due}. Reports sent before then are refused; reporting opens "
            "again by itself. To dispute this, open a ticket (reference {ref})." + _EN_SIGN,
            "Casemesh: after repeated unfounded reports, reporting is suspended until {due}. "
            "Ref {ref}",
        ),
    }
)

# Appeals of report decisions (the appeals service's decision-appeal track).
TEMPLATES.update(
    {
        ("report_appeal.received", "zh-CN"): Template(
            "【申诉已受理】{ref}",
            "您好：\n\n我们已收到您对举报处理决定的申诉（编号 {ref}），将由未参与原决定的人员"
            "复核，并在 {due}前给出结果。" + _ZH_SIGN,
            "【Casemesh】您的申诉{ref}已受理，将于{due}前人工复核。",
        ),
        ("report_appeal.received", "en"): Template(
            "We received your appeal {ref}",
            "Hello,\n\nWe have received your appeal against a decision on reported content "
            "(number {ref}). A person who did not take the decision will review it by {due}."
            + _EN_SIGN,
            "Casemesh: appeal {ref} received; a person reviews it by {due}.",
        ),
        ("report_appeal.info_requested", "zh-CN"): Template(
            "【需要补充申诉理由】{ref}",
            "您好：\n\n为复核您的申诉（编号 {ref}），请在 {due}前补充：\n\n{text}\n\n"
            "逾期未补充，申诉将被关闭。" + _ZH_SIGN,
            "【Casemesh】申诉{ref}需补充材料，请于{due}前提交。",
        ),
        ("report_appeal.info_requested", "en"): Template(
            "More information needed: appeal {ref}",
            "Hello,\n\nTo review your appeal (number {ref}) we need the following by {due}:"
            "\n\n{text}\n\nWithout it the appeal will be closed." + _EN_SIGN,
            "Casemesh: appeal {ref} needs more information by {due}.",
        ),
        ("report_appeal.upheld", "zh-CN"): Template(
            "【申诉结果】{ref}：申诉成立",
            "您好：\n\n您的申诉（编号 {ref}）经复核成立，原处理决定已撤销：\n\n{text}" + _ZH_SIGN,
            "【Casemesh】申诉{ref}成立，原处理决定已撤销。",
        ),
        ("report_appeal.upheld", "en"): Template(
            "Appeal {ref} upheld",
            "Hello,\n\nYour appeal (number {ref}) was upheld and the decision is reversed:"
            "\n\n{text}" + _EN_SIGN,
            "Casemesh: appeal {ref} upheld; the decision is reversed.",
        ),
        ("report_appeal.rejected", "zh-CN"): Template(
            "【申诉结果】{ref}：维持原决定",
            "您好：\n\n您的申诉（编号 {ref}）经复核，维持原处理决定，理由如下：\n\n{text}\n\n"
            "您还可以向依法设立的争议解决机构或人民法院寻求救济。" + _ZH_SIGN,
            "【Casemesh】申诉{ref}经复核维持原决定。",
        ),
        ("report_appeal.rejected", "en"): Template(
            "Appeal {ref}: the decision stands",
            "Hello,\n\nWe reviewed your appeal (number {ref}) and the decision stands, for "
            "these reasons:\n\n{text}\n\nYou may still turn to a certified out-of-court "
            "dispute settlement body or a court." + _EN_SIGN,
            "Casemesh: appeal {ref} reviewed; the decision stands.",
        ),
        ("report_appeal.abandoned", "zh-CN"): Template(
            "【申诉已关闭】{ref}",
            "您好：\n\n由于未在期限内收到补充材料，申诉（编号 {ref}）已关闭。" + _ZH_SIGN,
            "【Casemesh】申诉{ref}因未补充材料已关闭。",
        ),
        ("report_appeal.abandoned", "en"): Template(
            "Closed: appeal {ref}",
            "Hello,\n\nWe did not receive the information needed in time, so appeal {ref} is "
            "closed." + _EN_SIGN,
            "Casemesh: appeal {ref} was closed for lack of information.",
        ),
    }
)

# One-time codes for self-service actions (SMS only; never in e-mail).
TEMPLATES.update(
    {
        ("verification.code", "zh-CN"): Template(
            "【验证码】{ref}",
            "您的验证码是 {text}，{due}前有效。请勿告诉任何人。（{ref}）",
            "【Casemesh】验证码 {text}，用于更换绑定手机号，{due}前有效，请勿告诉他人。{ref}",
        ),
        ("verification.code", "en"): Template(
            "Your code {ref}",
            "Your code is {text}, valid until {due}. Never share it. ({ref})",
            "Casemesh: {text} is your code to change your phone number, valid until {due}. "
            "Never share it. {ref}",
        ),
    }
)

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
