"""The ticket categories the self-service centre offers, as data."""

from __future__ import annotations

from dataclasses import dataclass

from casemesh_tickets.domain import Priority


@dataclass(frozen=True)
class Category:
    id: str
    zh_cn: str
    en: str
    default_priority: Priority = Priority.NORMAL

    @property
    def labels(self) -> dict[str, str]:
        return {"zh-CN": self.zh_cn, "en": self.en}


CATEGORIES: tuple[Category, ...] = (
    Category("account.login", "无法登录", "Cannot log in", Priority.HIGH),
    Category("account.password", "密码找回与重置", "Password recovery and reset", Priority.HIGH),
    Category("account.phone_change", "更换绑定手机号", "Change the linked phone number"),
    Category("account.ban", "账号封禁与解封", "Account bans and appeals", Priority.HIGH),
    Category("account.profile_privacy", "资料与隐私设置", "Profile and privacy settings"),
    Category("content.upload_failed", "视频上传失败", "Video upload failed"),
    Category("content.review_rejected", "视频审核未通过", "Video rejected in review"),
    Category("content.copyright", "版权问题", "Copyright questions"),
    Category(
        "content.publishing_tips", "发布与运营建议", "Publishing tips and reach", Priority.LOW
    ),
    Category("interaction.report", "举报相关", "About a report"),
    Category("interaction.complaint", "投诉与建议", "Complaints and suggestions"),
    Category("ads.consulting", "广告投放咨询", "Advertising questions"),
    Category("ads.delivery_data", "广告投放数据", "Ad delivery data"),
    Category("other.general", "其他问题", "Something else", Priority.LOW),
)

BY_ID: dict[str, Category] = {c.id: c for c in CATEGORIES}
