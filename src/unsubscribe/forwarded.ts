import type { Database } from 'better-sqlite3';
import type { Logger } from '../logger.js';
import { queueForwardedReport, type ForwardedReport, type KnownNodes } from '../shared/forwarded-reports.js';
import { writeTransaction } from '../store/write-lock.js';
import { firstFieldValues } from '../header-fields.js';
import { unsubscribeAddressOf, unsubscribeTokenOf, type Unsubscriber, type UnsubscribeSettings } from './index.js';

/** What the MX and the one-click endpoint need to take unsubscribe requests, for this node's links and the others'. */
export interface UnsubscribeHandling {
  settings: UnsubscribeSettings;
  unsubscriber: Unsubscriber;
  /** Passes requests for other nodes' links on; null when the store is not shared. */
  forwarded: ForwardedUnsubscribes | null;
}

/** How the request came: the List-Unsubscribe mailto: address, or the one-click URL (RFC 8058). */
export type UnsubscribeWay = 'mailto' | 'one-click';

/** Says, in a request passed on as mail, that it came as a one-click POST to another node. */
const VIA_HEADER = 'X-Rebound-Unsubscribe-Via';

/** What became of a request for another node's link. */
export type ForwardOutcome = { forwarded: string } | { refused: 'unknown-node' };

/**
 * Unsubscribe requests for another node's links (store.shared.url). A link's token names a
 * recipient row in the store of the node that sent the mail and carries its tag. The node that
 * takes the request (its MX for the mailto: address, its admin server for the one-click URL)
 * checks it with that node's link key (Unsubscriber.check), then passes it on as mail to the
 * mailto: address, through the shared store as forwarded reports go; the node that sent the mail
 * checks the token again and unsubscribes. The suppression then reaches every node.
 */
export class ForwardedUnsubscribes {
  private readonly queue: (toNode: string, report: { receivedAt: Date; mailFrom: string; rcptTo: string[]; raw: Buffer }) => void;
  private readonly commit: (work: () => void) => void;

  constructor(
    db: Database,
    private readonly settings: UnsubscribeSettings,
    private readonly unsubscriber: Unsubscriber,
    private readonly knownNodes: KnownNodes,
    private readonly nodeName: string,
    private readonly log: Logger,
  ) {
    this.commit = (work) => writeTransaction(db, work)();
    this.queue = (toNode, report) => this.commit(() => queueForwardedReport(db, toNode, report));
  }

  /** The node whose tag a well-formed token carries, when that is another node this node knows; else null. */
  nodeOf(nodeTag: string): string | null {
    return this.knownNodes.nameOf(nodeTag) ?? null;
  }

  /**
   * Passes the request for `token` on to the node named by its tag: the header section of the
   * mail as received (the body changes nothing), or for a one-click POST a short mail saying so.
   * Refused when the tag is not known here yet (a node that joined since the last round: ask to
   * retry). The caller has counted the request against its client (the MX's report budget, the
   * one-click endpoint's own): each becomes a row in the shared store, checked or not.
   */
  forward(token: string, nodeTag: string, way: UnsubscribeWay, clientIp: string, mail: { raw: Buffer; mailFrom: string } | null = null): ForwardOutcome {
    const node = this.nodeOf(nodeTag);
    if (node === null) return { refused: 'unknown-node' };
    const raw =
      (mail && Buffer.from(`${headerOf(mail.raw)}\r\n\r\n`, 'latin1')) ??
      Buffer.from(
        `Subject: unsubscribe\r\n${VIA_HEADER}: ${way}\r\n\r\nA one-click unsubscribe request (RFC 8058) taken by node ${this.nodeName} for a link of node ${node}.\r\n`,
        'utf8',
      );
    this.queue(node, { receivedAt: new Date(), mailFrom: mail?.mailFrom ?? '', rcptTo: [unsubscribeAddressOf(this.settings, token)], raw });
    this.log.info({ node, way, client: clientIp }, 'unsubscribe request for another node\'s link passed on to it');
    return { forwarded: node };
  }

  /**
   * Takes a request another node passed on (a forwarded report whose recipients are all mailto:
   * unsubscribe addresses): unsubscribes what this node's tokens name, in the transaction that
   * marks it taken; a token that fails the check here is logged and dropped. Returns false when
   * the report is no unsubscribe request (it is then stored as a report).
   */
  take(report: ForwardedReport, markTaken: () => void): boolean {
    const tokens = report.rcptTo.map((address) => unsubscribeTokenOf(this.settings, address));
    if (tokens.length === 0 || tokens.some((token) => token === null)) return false;
    const via = firstFieldValues(headerOf(report.raw), new Set([VIA_HEADER.toLowerCase()])).get(VIA_HEADER.toLowerCase());
    const way: UnsubscribeWay = via?.toLowerCase() === 'one-click' ? 'one-click' : 'mailto';
    let taken = false;
    for (const token of tokens as string[]) {
      const check = this.unsubscriber.check(token);
      if (!check.valid) {
        this.log.warn({ fromNode: report.fromNode, reason: check.reason }, 'unsubscribe request passed on by another node not applied: its token is not valid here');
        continue;
      }
      const result = this.unsubscriber.byRecipient(check.recipientId, way, taken ? undefined : markTaken);
      taken = true;
      this.log.info({ fromNode: report.fromNode, recipientId: check.recipientId, way, result }, 'unsubscribe request passed on by another node');
    }
    if (!taken) this.commit(markTaken);
    return true;
  }
}

/** The header section of a mail (at most 64 KB of it). */
function headerOf(raw: Buffer): string {
  const head = raw.subarray(0, Math.min(raw.length, 65_536)).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  return end === -1 ? head : head.slice(0, end);
}
