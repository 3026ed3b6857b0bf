/** Every string the page shows, in zh-CN and en. */

export type Locale = "zh-CN" | "en";

export const LOCALES: readonly Locale[] = ["zh-CN", "en"];

const zh = {
  title: "帮助中心",
  skip: "跳到主要内容",
  language: "语言",
  signOut: "退出",
  signInHeading: "登录",
  signInNote: "本地开发登录：输入任意用户名。正式环境由应用传入登录凭证。",
  userName: "用户名",
  signIn: "登录",
  signingIn: "正在登录…",
  signedInAs: "已登录：{name}",
  searchHeading: "搜索帮助中心",
  searchLabel: "描述您的问题",
  search: "搜索",
  searching: "正在搜索…",
  resultsHeading: "搜索结果",
  resultCount: "找到 {count} 篇文章",
  noResults: "没有找到相关文章。试试换个说法，或使用下方的引导，或直接联系客服。",
  flowsHeading: "一步步排查",
  flowsNote: "回答几个问题，找到适合您的办法。",
  contactHeading: "还是没有找到答案？",
  contactSupport: "联系客服（提交工单）",
  backToHelp: "返回帮助中心",
  category: "分类",
  updated: "更新于",
  flowAction: "请在应用内完成这项自助操作：{action}",
  actionPhoneChange: "更换绑定手机号",
  actionRestrictionReasons: "查看账号受限原因",
  solvedQuestion: "这解决了您的问题吗？",
  yes: "解决了",
  no: "没有解决",
  solvedThanks: "很高兴帮到您！",
  ticketFormHeading: "提交工单",
  ticketFormNote: "请告诉我们发生了什么，我们会通过您选择的方式通知处理进展。",
  categoryLabel: "问题分类",
  chooseCategory: "请选择分类",
  subject: "标题",
  description: "问题描述",
  email: "电子邮箱",
  phone: "手机号",
  phoneHint: "国际格式，例如 +8613800138000",
  channels: "通过以下方式接收进展通知",
  channelEmail: "电子邮件",
  channelSms: "短信",
  screenshot: "截图（可选）",
  uploadProgress: "上传进度",
  uploading: "正在上传截图…",
  uploaded: "截图已上传",
  submit: "提交工单",
  submitting: "正在提交…",
  draftSubject: "自助服务未能解决：{category}",
  draftTried: "我在自助服务中心尝试过：",
  draftSearched: "搜索：{query}",
  draftRead: "阅读：{title}",
  draftFlow: "引导流程：{title}",
  draftStill: "仍未解决。",
  ticketHeading: "您的工单",
  ticketNumber: "工单编号",
  ticketStatus: "状态",
  ticketSubject: "标题",
  ticketCategory: "分类",
  ticketUpdates: "进展通知",
  ticketCreated: "工单已提交",
  historyHeading: "处理记录",
  refresh: "刷新",
  newTicket: "再提交一个工单",
  evidence: "附件：{count} 个",
  errorPrefix: "出错了：",
  fixFields: "请修改标出的内容后再提交。",
  signInAgain: "登录已失效，请重新登录。",
  transport: "连接方式：{transport}",
  "status.NEW": "已受理，等待客服处理",
  "status.OPEN": "客服处理中",
  "status.PENDING": "等待您补充信息",
  "status.ON_HOLD": "等待第三方处理",
  "status.SOLVED": "已解决",
  "status.CLOSED": "已关闭",
  "status.CANCELLED": "已撤销",
  "status.UNSPECIFIED": "未知",
  "event.TicketCreated": "工单已提交",
  "event.TicketAssigned": "客服已接手",
  "event.CommentAdded": "新回复",
  "event.InfoRequested": "客服请您补充信息",
  "event.TicketPutOnHold": "等待第三方处理",
  "event.TicketSolved": "问题已解决",
  "event.TicketReopened": "工单已重新打开",
  "event.TicketClosed": "工单已关闭",
  "event.TicketCancelled": "工单已撤销",
  "event.TicketRated": "已评价",
};

export type Key = keyof typeof zh;

const en: Record<Key, string> = {
  title: "Help centre",
  skip: "Skip to the main content",
  language: "Language",
  signOut: "Sign out",
  signInHeading: "Sign in",
  signInNote:
    "Local development sign-in: any user name will do. In production the app hands in its sign-in token.",
  userName: "User name",
  signIn: "Sign in",
  signingIn: "Signing in…",
  signedInAs: "Signed in as {name}",
  searchHeading: "Search the help centre",
  searchLabel: "Describe your problem",
  search: "Search",
  searching: "Searching…",
  resultsHeading: "Results",
  resultCount: "{count} articles found",
  noResults: "No article matched. Try other words, follow a guide below, or contact support.",
  flowsHeading: "Step by step",
  flowsNote: "Answer a few questions to find what helps in your case.",
  contactHeading: "Still no answer?",
  contactSupport: "Contact support (open a ticket)",
  backToHelp: "Back to the help centre",
  category: "Category",
  updated: "Updated",
  flowAction: "Please do this in the app: {action}",
  actionPhoneChange: "change the linked phone number",
  actionRestrictionReasons: "see why the account is restricted",
  solvedQuestion: "Did this solve your problem?",
  yes: "Yes",
  no: "No",
  solvedThanks: "Glad it helped!",
  ticketFormHeading: "Open a ticket",
  ticketFormNote: "Tell us what happened; we will keep you posted the way you choose.",
  categoryLabel: "What is it about?",
  chooseCategory: "Choose a category",
  subject: "Subject",
  description: "Description",
  email: "E-mail",
  phone: "Phone",
  phoneHint: "International format, e.g. +8613800138000",
  channels: "Send me updates by",
  channelEmail: "E-mail",
  channelSms: "SMS",
  screenshot: "Screenshot (optional)",
  uploadProgress: "Upload progress",
  uploading: "Uploading the screenshot…",
  uploaded: "Screenshot uploaded",
  submit: "Submit ticket",
  submitting: "Submitting…",
  draftSubject: "Self-service did not solve it: {category}",
  draftTried: "What I tried in the self-service centre:",
  draftSearched: "Searched: {query}",
  draftRead: "Read: {title}",
  draftFlow: "Guided flow: {title}",
  draftStill: "It is still not solved.",
  ticketHeading: "Your ticket",
  ticketNumber: "Ticket number",
  ticketStatus: "Status",
  ticketSubject: "Subject",
  ticketCategory: "Category",
  ticketUpdates: "Updates by",
  ticketCreated: "Ticket submitted",
  historyHeading: "History",
  refresh: "Refresh",
  newTicket: "Open another ticket",
  evidence: "{count} attachment(s)",
  errorPrefix: "Something went wrong: ",
  fixFields: "Please correct the marked fields and submit again.",
  signInAgain: "Your sign-in has expired; please sign in again.",
  transport: "Connection: {transport}",
  "status.NEW": "Received, waiting for an agent",
  "status.OPEN": "An agent is working on it",
  "status.PENDING": "Waiting for your reply",
  "status.ON_HOLD": "Waiting on a third party",
  "status.SOLVED": "Solved",
  "status.CLOSED": "Closed",
  "status.CANCELLED": "Withdrawn",
  "status.UNSPECIFIED": "Unknown",
  "event.TicketCreated": "Ticket submitted",
  "event.TicketAssigned": "An agent took the ticket",
  "event.CommentAdded": "New reply",
  "event.InfoRequested": "The agent asked you for more information",
  "event.TicketPutOnHold": "Waiting on a third party",
  "event.TicketSolved": "Solved",
  "event.TicketReopened": "Reopened",
  "event.TicketClosed": "Closed",
  "event.TicketCancelled": "Withdrawn",
  "event.TicketRated": "Rated",
};

const TABLE: Record<Locale, Record<Key, string>> = { "zh-CN": zh, en };

/** The user's choice, else the browser's language: Chinese for any `zh`, English otherwise. */
export function initialLocale(saved: string | null, browser: readonly string[]): Locale {
  if (saved === "zh-CN" || saved === "en") {
    return saved;
  }
  for (const tag of browser) {
    const lang = tag.toLowerCase();
    if (lang.startsWith("zh")) return "zh-CN";
    if (lang.startsWith("en")) return "en";
  }
  return "en";
}

/** The string for `key`, with `{name}` placeholders filled in. */
export function text(
  locale: Locale,
  key: Key,
  values: Record<string, string | number> = {},
): string {
  return TABLE[locale][key].replace(/\{(\w+)\}/g, (_, name: string) =>
    String(values[name] ?? `{${name}}`),
  );
}

/** A key the table may not have (an event type or status from the server). */
export function textOr(locale: Locale, key: string, fallback: string): string {
  return key in zh ? TABLE[locale][key as Key] : fallback;
}

export function isKey(key: string): key is Key {
  return key in zh;
}
