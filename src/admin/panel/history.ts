import type { FastifyInstance } from 'fastify';
import { DEFAULT_SEARCH_LIMITS, HistorySearch, planSearch, QUEUE_ID_FORMAT, SEARCH_KINDS, SearchTermError, type SearchField, type SearchKind, type SearchOutcome, type SearchPlan } from '../../store/history-search.js';
import { MessageHistory, type MessageStory } from '../../store/history.js';
import { redactUrl } from '../../redact-url.js';
import { isStoreShared } from '../../store/shared-outbox.js';
import type { PanelDeps } from './index.js';

/**
 * Recipients shown per message when the search did not name one (a message can have thousands):
 * more when the search found that message alone.
 */
const RECIPIENTS_OF_ONE_MESSAGE = 200;
const RECIPIENTS_PER_MESSAGE = 20;
/** Other nodes' events shown under the results (store.shared.url); the API pages through the rest. */
const OTHER_NODE_EVENTS = 200;

/** The kinds an operator can choose, in the form's words. */
const KIND_LABELS: Record<SearchKind, string> = {
  auto: 'Guess from the term',
  recipient: 'Recipient address',
  sender: 'Sender (envelope)',
  'message-id': 'Message-ID',
  subject: 'Subject contains',
  'queue-id': 'Queue id',
};

const FIELD_WORDS: Record<SearchField, string> = {
  recipient: 'recipient address',
  sender: 'sender',
  'message-id': 'Message-ID',
  subject: 'subject',
  'queue-id': 'queue id',
};

interface HistoryQuery {
  q?: string | string[];
  kind?: string | string[];
  before?: string | string[];
}

/** What the template shows of one found message. */
interface FoundMessage extends MessageStory {
  matchedBy: string[];
  /** Recipients of the message not shown here. */
  otherRecipients: number;
  /** Only the searched address's recipients are shown. */
  onlyAddress: string | null;
}

/**
 * `/history`: one search field for an address, a sender, a Message-ID, a subject or a queue id,
 * and for every message it finds: the message, and per recipient every try, event and webhook
 * delivery (the `v_recipient_history` story). Read-only; what it reads is store/history.ts, as
 * the API's /v1/queue/:queueId and /v1/events do.
 */
export function historyPage(panel: FastifyInstance, deps: PanelDeps): void {
  const search = new HistorySearch(deps.db);
  const history = new MessageHistory(deps.db);

  panel.get<{ Querystring: HistoryQuery }>('/history', { config: { panel: 'page' } }, (request, reply) => {
    const query = request.query ?? {};
    const view = (data: Record<string, unknown>) =>
      deps.render(request, reply, 'history', 'Recipient history', {
        styles: ['stacked-tables.css', 'history.css'],
        kinds: SEARCH_KINDS.map((kind) => ({ kind, label: KIND_LABELS[kind] })),
        term: '',
        kind: 'auto',
        error: null,
        results: null,
        ...data,
      });

    const given = (name: keyof HistoryQuery): string | undefined | null => {
      const value = query[name];
      return Array.isArray(value) ? null : value;
    };
    const term = given('q');
    const kindParam = given('kind');
    const beforeParam = given('before');
    if (term === undefined && kindParam === undefined) return view({});
    if (term === null || kindParam === null || beforeParam === null) return view({ error: 'Give each of q, kind and before once in the address.' });
    const kind = (kindParam ?? 'auto') as SearchKind;
    if (!(SEARCH_KINDS as readonly string[]).includes(kind)) {
      return view({ term: term ?? '', error: `"${kindParam}" is not a kind of search; choose one of the list.` });
    }
    let before: number | undefined;
    if (beforeParam !== undefined && beforeParam !== '') {
      if (!/^\d{1,15}$/.test(beforeParam)) return view({ term, kind, error: `"${beforeParam}" is not a place in the results; start the search again.` });
      before = Number(beforeParam);
    }

    let plan: SearchPlan;
    try {
      plan = planSearch(term ?? '', kind);
    } catch (error) {
      if (error instanceof SearchTermError) return view({ term: term ?? '', kind, error: error.message });
      throw error;
    }
    const outcome = search.find(plan, before);
    const onlyAddress = outcome.searched.find((part) => part.field === 'recipient')?.value ?? null;
    // Mail to this address, or this queue id, may have gone through another node sharing the store
    // (asked as planned: an address with no mail here is searched here as a sender instead).
    const otherAddress = plan.parts.find((part) => part.field === 'recipient')?.value;
    const otherQueueId = plan.parts.find((part) => part.field === 'queue-id')?.value;
    const otherNodes =
      isStoreShared(deps.db) && before === undefined && (otherAddress !== undefined || otherQueueId !== undefined)
        ? history.otherNodeEvents(otherAddress !== undefined ? { recipient: otherAddress } : { queueId: otherQueueId as string }, OTHER_NODE_EVENTS, 0)
        : null;
    const found: FoundMessage[] = [];
    const maxRecipients = outcome.matches.length === 1 ? RECIPIENTS_OF_ONE_MESSAGE : RECIPIENTS_PER_MESSAGE;
    for (const match of outcome.matches) {
      // Found by the address alone: show that recipient; found otherwise (also): show them all.
      const addressOnly = onlyAddress !== null && match.matchedBy.every((field) => field === 'recipient');
      const story = history.story(match.messageRowId, { ...(addressOnly ? { onlyAddress } : {}), maxRecipients });
      if (!story) continue; // removed by retention between the search and this read
      found.push({
        ...redacted(story),
        matchedBy: match.matchedBy.map((field) => FIELD_WORDS[field]),
        otherRecipients: story.recipientsTotal - story.recipients.length,
        onlyAddress: addressOnly ? onlyAddress : null,
      });
    }
    return view({
      term: term ?? '',
      kind,
      results: {
        searchedAs: outcome.searched.map((part) => FIELD_WORDS[part.field]),
        guessedWhy: plan.guessed ? guessedWhy(plan, outcome) : null,
        messages: found,
        firstPage: before === undefined,
        older: outcome.older === null ? null : `/history?${new URLSearchParams({ q: term ?? '', kind, before: String(outcome.older) }).toString()}`,
        scanned: scannedNote(outcome, before === undefined),
        pageSize: DEFAULT_SEARCH_LIMITS.pageSize,
        full: outcome.matches.length === DEFAULT_SEARCH_LIMITS.pageSize && outcome.older !== null,
        nothingHint: found.length === 0 ? (otherNodes !== null && otherNodes.total > 0 ? 'Nothing went through this node; what the other nodes recorded is below.' : nothingHint(plan, outcome)) : null,
        otherNodes,
      },
    });
  });
}

/** The story with every webhook endpoint URL redacted (a receiver's credentials never reach the page). */
function redacted(story: MessageStory): MessageStory {
  return {
    ...story,
    recipients: story.recipients.map((recipient) => ({
      ...recipient,
      webhookDeliveries: recipient.webhookDeliveries.map((delivery) => ({ ...delivery, endpointUrl: redactUrl(delivery.endpointUrl) })),
    })),
  };
}

/** Why a guessed kind was taken, and how to search otherwise. */
function guessedWhy(plan: SearchPlan, outcome: SearchOutcome): string {
  if (plan.unlessNoMailTo) {
    return outcome.searched === plan.unlessNoMailTo
      ? 'guessed from the term: there is no mail to that address, so mail from it'
      : 'guessed from the term: there is mail to that address; choose "Sender" for mail from it';
  }
  return 'guessed from the term; choose a kind to search otherwise';
}

/** Says how far back a search without an index read, in the operator's words. */
function scannedNote(outcome: SearchOutcome, firstPage: boolean): string | null {
  if (!outcome.scanned || outcome.scanned.complete) return null;
  const what = outcome.searched
    .filter((part) => part.field !== 'recipient' && part.field !== 'queue-id')
    .map((part) => FIELD_WORDS[part.field])
    .join(' and ');
  const count = DEFAULT_SEARCH_LIMITS.scanWindow.toLocaleString('en-US');
  const since = outcome.scanned.oldestReceivedAt ? `, back to ${outcome.scanned.oldestReceivedAt.slice(0, 19).replace('T', ' ')} UTC` : '';
  return `The ${what} has no index, so this page read ${firstPage ? `the newest ${count}` : `${count} older`} messages${since}; the next page reads further back.`;
}

/** When nothing was found: what the term was taken for, and what else it could be. */
function nothingHint(plan: SearchPlan, outcome: SearchOutcome): string {
  const fields = outcome.searched.map((part) => part.field);
  if (fields.includes('queue-id')) {
    const queueId = outcome.searched[0]?.value ?? '';
    return `No message has queue id "${queueId}": it was never accepted here, or store.retention.historyDays removed it. (${QUEUE_ID_FORMAT}.)${plan.guessed ? ' To search it as a subject, choose "Subject contains".' : ''}`;
  }
  if (plan.unlessNoMailTo) {
    return 'No mail to or from that address. A Message-ID is searched when written in <angle brackets>, or choose "Message-ID".';
  }
  if (fields.includes('message-id') && plan.guessed) return 'No message has that Message-ID. To search an address written in <>, write it without them or choose "Recipient address".';
  return 'Nothing found.';
}
