/**
 * The Casemesh public API (`casemesh.v1`) for browsers.
 *
 * The messages and service descriptors are generated from `proto/` by
 * `npm run generate`; this module re-exports them and adds what every page
 * needs around them: a transport that sends the bearer token (Connect or
 * gRPC-Web), the field violations of an `invalid_argument` error, and the
 * evidence upload, which goes over plain HTTP because browsers cannot stream a
 * request body to `EvidenceService.UploadEvidence`.
 */

import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { codeFromHttpStatus, errorFromJson } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

import { type Evidence, EvidenceSchema } from "./gen/casemesh/v1/evidence_pb";
import { type TicketEvent, type TicketService } from "./gen/casemesh/v1/tickets_pb";
import {
  type BadRequest_FieldViolation,
  BadRequestSchema,
  ErrorInfoSchema,
  LocalizedMessageSchema,
} from "./gen/google/rpc/error_details_pb";

export * from "./gen/casemesh/v1/appeals_pb";
export * from "./gen/casemesh/v1/casequeue_pb";
export * from "./gen/casemesh/v1/evidence_pb";
export * from "./gen/casemesh/v1/helpcenter_pb";
export * from "./gen/casemesh/v1/privacy_pb";
export * from "./gen/casemesh/v1/reports_pb";
export * from "./gen/casemesh/v1/tickets_pb";
export {
  type BadRequest,
  BadRequestSchema,
  type BadRequest_FieldViolation,
  BadRequest_FieldViolationSchema,
} from "./gen/google/rpc/error_details_pb";
export { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
export { timestampDate } from "@bufbuild/protobuf/wkt";

/** The caller's bearer token (a JWT), read before every call; nothing when signed out. */
export type TokenGetter = () => string | undefined | Promise<string | undefined>;

/** The language the page is shown in (`zh-CN`, `en`), read before every call. */
export type LanguageGetter = () => string;

function bearer(token: TokenGetter, language?: LanguageGetter): Interceptor {
  return (next) => async (req) => {
    const value = await token();
    if (value) {
      req.header.set("Authorization", `Bearer ${value}`);
    }
    // Refusals come in the page's language (errorMessage), not the browser's.
    if (language) {
      req.header.set("Accept-Language", language());
    }
    return next(req);
  };
}

/**
 * The Connect protocol (JSON). Every call is a POST, reads included: a
 * read's request would otherwise be in its URL (what a ticket search looks
 * for, a requester's e-mail or phone), and so in the access logs of every
 * proxy on the way. (The gateway still answers Connect GETs of reads.)
 */
export function connectTransport(
  baseUrl: string,
  token: TokenGetter,
  language?: LanguageGetter,
): Transport {
  return createConnectTransport({ baseUrl, interceptors: [bearer(token, language)] });
}

/** gRPC-Web (binary), for infrastructure that already speaks it. */
export function grpcWebTransport(
  baseUrl: string,
  token: TokenGetter,
  language?: LanguageGetter,
): Transport {
  return createGrpcWebTransport({ baseUrl, interceptors: [bearer(token, language)] });
}

/**
 * What is wrong with a field, for people: in the language the call asked for
 * when the gateway has the words (`localizedMessage`), else the description.
 */
export function violationText(violation: BadRequest_FieldViolation): string {
  return violation.localizedMessage?.message || violation.description;
}

/**
 * What a failed call says, for people: the refusal in the language the call
 * asked for (the gateway's `google.rpc.LocalizedMessage`), else its message.
 */
export function errorMessage(err: unknown): string {
  const error = ConnectError.from(err);
  const [said] = error.findDetails(LocalizedMessageSchema);
  return said?.message || error.rawMessage;
}

/**
 * The fields an `invalid_argument` error names (`ticket.subject`,
 * `ticket.contact.email`, …) with what is wrong with each; none for any other
 * error.
 */
export function fieldViolations(err: unknown): BadRequest_FieldViolation[] {
  const error = ConnectError.from(err);
  if (error.code !== Code.InvalidArgument) {
    return [];
  }
  return error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations);
}

/**
 * The reason a service gave for refusing a call (`REQUEST_ID_REUSED`,
 * `STALE_ETAG`, …: google.rpc.ErrorInfo), for a page to act on; "" when it
 * gave none.
 */
export function errorReason(err: unknown): string {
  return ConnectError.from(err).findDetails(ErrorInfoSchema)[0]?.reason ?? "";
}

/**
 * Where a `RetryKey` keeps what it last sent and the id it sent it under,
 * beyond the page's memory (to outlive a reload): `read` gives back what
 * `write` last kept, and `write(undefined)` forgets it.
 */
export interface RetryKeyStore {
  read(): [sent: string, id: string] | undefined;
  write(kept: [sent: string, id: string] | undefined): void;
}

/**
 * Request ids for one kind of change from one form. The id stays the same
 * while what is sent stays the same, so a retry after a lost answer (the
 * change may have landed) lands once and is answered as the first send was;
 * anything sent that differs, or `done` after a success, takes a new one.
 * With a `store`, what it keeps there comes first: the same request sent from
 * the page loaded again (a new key, the same store) is the same request too.
 */
export class RetryKey {
  private kept: [sent: string, id: string] | undefined;

  constructor(private readonly store?: RetryKeyStore) {}

  for(request: unknown): string {
    const sent = JSON.stringify(request, (_key, value: unknown) =>
      typeof value === "bigint" ? value.toString() : value,
    );
    const [was, id] = this.store?.read() ?? this.kept ?? ["", ""];
    if (sent === was) return id;
    this.kept = [sent, crypto.randomUUID()];
    this.store?.write(this.kept);
    return this.kept[1];
  }

  done(): void {
    this.kept = undefined;
    this.store?.write(undefined);
  }
}

/** The short number agents and requesters both see: a case name's first 8 characters. */
export function shortId(name: string): string {
  return (name.split("/")[1] ?? name).slice(0, 8).toUpperCase();
}

/**
 * Whether a call could not reach the server: the gateway or the upload said
 * so (`unavailable`), or the browser's fetch itself failed, which the
 * transport passes on as `unknown` with the fetch's TypeError ("Failed to
 * fetch") as its cause. A TypeError the page threw itself is no ConnectError,
 * and is not taken for one.
 */
export function unreachable(err: unknown): boolean {
  return (
    err instanceof ConnectError &&
    (err.code === Code.Unavailable || (err.code === Code.Unknown && err.cause instanceof TypeError))
  );
}

/**
 * Every item of a listing, page after page, up to `most` (then what was
 * read: the first `most`, in the listing's order). `page` reads the page a
 * token names ("" for the first) and gives its items and the next token.
 */
export async function readPages<T>(
  page: (token: string) => Promise<{ items: T[]; next: string }>,
  most: number,
): Promise<T[]> {
  const read: T[] = [];
  let token = "";
  do {
    const { items, next } = await page(token);
    read.push(...items);
    token = next;
  } while (token && read.length < most);
  return read.slice(0, most);
}

/** The most steps of a case's history read (ten pages of 200). */
export const HISTORY_READ = 2000;

/**
 * A ticket's history, oldest first, page after page (a page holds at most
 * 200 steps, and about 1 MiB of text), up to `most` steps: the latest steps
 * of a conversation longer than one page are read too. Past `most`, the
 * latest are the ones left out.
 */
export async function ticketHistory(
  tickets: Client<typeof TicketService>,
  name: string,
  most = HISTORY_READ,
): Promise<TicketEvent[]> {
  return readPages(async (pageToken) => {
    const page = await tickets.listTicketEvents({ name, pageSize: 200, pageToken });
    return { items: page.events, next: page.nextPageToken };
  }, most);
}

export interface UploadOptions {
  /** Called as the bytes go out: `loaded` of `total` bytes sent. */
  onProgress?: (loaded: number, total: number) => void;
  /** Aborting rejects with a `canceled` ConnectError. */
  signal?: AbortSignal;
  /** The name to record; `file.name` by default. */
  fileName?: string;
  /** The page's language, as the API transport sends it: the upload's refusals are said in it. */
  language?: LanguageGetter;
}

/**
 * Uploads one file as evidence (`POST {baseUrl}/uploads/evidence`, the bytes as
 * the body) and resolves to the stored `Evidence`; attach it to a case by its
 * `name` (`evidence: [{ name: evidence.name }]`). The service decides the real
 * type from the bytes; the same bytes uploaded again give the same evidence.
 * Fails with a ConnectError, like the API calls.
 */
export function uploadEvidence(
  baseUrl: string,
  token: TokenGetter,
  file: Blob & { readonly name?: string },
  options: UploadOptions = {},
): Promise<Evidence> {
  const url = `${baseUrl.replace(/\/+$/, "")}/uploads/evidence`;
  const fileName = options.fileName ?? file.name ?? "";
  return Promise.resolve(token()).then(
    (value) =>
      new Promise<Evidence>((resolve, reject) => {
        const { signal, onProgress } = options;
        if (signal?.aborted) {
          reject(new ConnectError("upload cancelled", Code.Canceled));
          return;
        }
        const xhr = new XMLHttpRequest();
        xhr.open("POST", url);
        xhr.responseType = "text";
        if (value) {
          xhr.setRequestHeader("Authorization", `Bearer ${value}`);
        }
        // Else the browser's own language, not the one the page is shown in.
        if (options.language) {
          xhr.setRequestHeader("Accept-Language", options.language());
        }
        // No declared type: the browser's `file.type` is guessed from the
        // name (a JPEG saved as photo.png says image/png), and the service,
        // which reads the type from the bytes, refuses a declaration they
        // contradict.
        xhr.setRequestHeader("Content-Type", "application/octet-stream");
        xhr.setRequestHeader("X-File-Name", encodeURIComponent(fileName));
        if (onProgress) {
          xhr.upload.onprogress = (e) =>
            onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
        }
        const onAbort = () => xhr.abort();
        signal?.addEventListener("abort", onAbort, { once: true });
        xhr.onloadend = () => signal?.removeEventListener("abort", onAbort);
        xhr.onabort = () => reject(new ConnectError("upload cancelled", Code.Canceled));
        xhr.onerror = () =>
          reject(new ConnectError("the upload could not reach the server", Code.Unavailable));
        xhr.onload = () => {
          try {
            if (xhr.status >= 200 && xhr.status < 300) {
              const json = JSON.parse(xhr.responseText) as JsonValue;
              resolve(fromJson(EvidenceSchema, json, { ignoreUnknownFields: true }));
            } else {
              reject(errorFromHttp(xhr.status, xhr.responseText));
            }
          } catch (err) {
            reject(ConnectError.from(err, Code.Internal));
          }
        };
        xhr.send(file);
      }),
  );
}

/**
 * Bytes read in pieces (a server stream: `ReadEvidence`, `ExportPerson`)
 * gathered into one Blob. The pieces read so far are folded into a Blob of
 * their own before the next would take them past `foldBytes` (8 MiB), and
 * as soon as they reach it: the page then holds at most that much as pieces
 * (a single piece larger than that, alone), not the whole file twice over
 * (every piece, and the Blob made of them all at the end), which a phone's
 * tab does not survive for a few hundred megabytes. The browser may keep
 * Blobs out of the page's memory (Chromium moves large ones to disk).
 */
export class BlobGatherer {
  private readonly folded: Blob[] = [];
  private pieces: Uint8Array<ArrayBuffer>[] = [];
  private piecesBytes = 0;
  private added = 0;

  constructor(private readonly foldBytes = 8 * 1024 * 1024) {}

  add(piece: Uint8Array): void {
    if (this.piecesBytes + piece.length > this.foldBytes) this.fold();
    // A copy: the piece may be a view of the whole decoded message, which it
    // would otherwise keep alive.
    this.pieces.push(new Uint8Array(piece));
    this.piecesBytes += piece.length;
    this.added += piece.length;
    if (this.piecesBytes >= this.foldBytes) this.fold();
  }

  private fold(): void {
    if (!this.pieces.length) return;
    this.folded.push(new Blob(this.pieces));
    this.pieces = [];
    this.piecesBytes = 0;
  }

  /** The bytes added so far. */
  get bytes(): number {
    return this.added;
  }

  /** Everything added, in order, as one Blob of `type`. */
  blob(type: string): Blob {
    return new Blob([...this.folded, ...this.pieces], { type });
  }
}

/**
 * The error in a plain HTTP answer (the upload endpoint, a sign-in endpoint):
 * the Connect-style JSON error in `body` (`{"code": …, "message": …,
 * "details": […]}`), else one made from the HTTP status.
 */
export function errorFromHttp(status: number, body: string): ConnectError {
  const fallback = new ConnectError(`HTTP ${status}`, codeFromHttpStatus(status));
  try {
    // Exported for protocol implementations; its exact version is pinned.
    return errorFromJson(JSON.parse(body) as JsonValue, undefined, fallback);
  } catch {
    return fallback;
  }
}

/**
 * Local stacks only: the gateway's development sign-in (`POST /dev/sign-in`,
 * answered on a loopback host only) mints a token for any name, with the
 * roles asked for (a user when none).
 */
export async function devSignIn(
  baseUrl: string | URL,
  subject: string,
  roles: string[] = [],
): Promise<string> {
  const res = await fetch(new URL("/dev/sign-in", baseUrl), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(roles.length ? { subject, roles } : { subject }),
  });
  const body = await res.text();
  if (!res.ok) {
    throw errorFromHttp(res.status, body);
  }
  const answer: unknown = JSON.parse(body);
  if (
    typeof answer !== "object" ||
    !answer ||
    !("token" in answer) ||
    typeof answer.token !== "string"
  ) {
    throw new ConnectError("the sign-in answer has no token", Code.Internal);
  }
  return answer.token;
}
