import { QUEUE_ACTIONS, type QueueAction, type QueueAuditAction, type QueueAuditEntry, type QueueSelectorInput } from '../../store/queue-actions.js';

/**
 * The queue page's action form: an action, how the mail is selected and the value (queue ids, a
 * domain, a sender). Only the form's own shape is checked here; the values go to the store as
 * given, and queueSelector's refusals (a malformed domain, an empty list) are the page's message.
 */

/** The actions in the form's order: flush first, as it changes least. */
export const PANEL_QUEUE_ACTIONS = ['flush', ...QUEUE_ACTIONS] as const satisfies readonly QueueAuditAction[];

/** How the form selects mail; 'all' (every deferred recipient) only for flush, as postqueue -f. */
export const SELECTOR_KINDS = ['queue-ids', 'domain', 'sender', 'all'] as const;
export type SelectorKind = (typeof SELECTOR_KINDS)[number];

export const ACTION_LABELS: Record<QueueAuditAction, string> = { flush: 'Flush', hold: 'Hold', release: 'Release', delete: 'Delete', bounce: 'Bounce' };
export const SELECTOR_LABELS: Record<SelectorKind, string> = { 'queue-ids': 'Queue ids', domain: 'Recipient domain', sender: 'Sender', all: 'All deferred mail' };

/** The form as the operator left it, so a refused one comes back unchanged. */
export interface QueueActionForm {
  action: string;
  by: string;
  value: string;
}

export type QueueActionReading =
  /** null: every deferred recipient (flush only). */
  | { form: QueueActionForm; action: 'flush'; selector: QueueSelectorInput | null; error: null }
  | { form: QueueActionForm; action: QueueAction; selector: QueueSelectorInput; error: null }
  | { form: QueueActionForm; action: null; selector: null; error: string };

/** The form with nothing chosen yet. */
export const EMPTY_QUEUE_FORM: QueueActionForm = { action: 'hold', by: 'queue-ids', value: '' };

/** A paste past this is not a list an operator typed; the store's own cap is 10,000 ids. */
const MAX_VALUE_CHARS = 50_000;

function text(body: Record<string, unknown> | undefined, name: string): string {
  const value = body?.[name];
  return typeof value === 'string' ? value : '';
}

/** Reads a posted action form (fastify's formbody: a repeated field is an array, read as absent). */
export function readQueueActionForm(body: Record<string, unknown> | undefined): QueueActionReading {
  const form: QueueActionForm = { action: text(body, 'action'), by: text(body, 'by'), value: text(body, 'value') };
  const refuse = (error: string): QueueActionReading => ({ form: { ...form, value: form.value.slice(0, MAX_VALUE_CHARS) }, action: null, selector: null, error });
  const action = PANEL_QUEUE_ACTIONS.find((a) => a === form.action);
  if (!action) return refuse(`"${form.action.slice(0, 40)}" is not a queue action; pick ${PANEL_QUEUE_ACTIONS.map((a) => ACTION_LABELS[a]).join(', ')}`);
  const by = SELECTOR_KINDS.find((kind) => kind === form.by);
  if (!by) return refuse(`"${form.by.slice(0, 40)}" is not a way to select mail; pick ${SELECTOR_KINDS.map((kind) => SELECTOR_LABELS[kind]).join(', ')}`);
  if (form.value.length > MAX_VALUE_CHARS) return refuse(`the value is ${form.value.length.toLocaleString('en-US')} characters, more than ${MAX_VALUE_CHARS.toLocaleString('en-US')}; split the list, or select by domain or sender`);
  if (by === 'all') {
    if (action !== 'flush') return refuse(`${ACTION_LABELS[action]} needs queue ids, a recipient domain or a sender; only Flush takes all deferred mail`);
    return { form, action, selector: null, error: null };
  }
  const selector: QueueSelectorInput =
    by === 'queue-ids' ? { queueIds: form.value.split(/[\s,]+/).filter((id) => id !== '') } : by === 'domain' ? { domain: form.value } : { sender: form.value };
  return { form, action, selector, error: null };
}

/** An audit entry's selection in words: "domain example.com", "2 queue ids", "all deferred mail". */
export function selectionWords(entry: Pick<QueueAuditEntry, 'selector' | 'value'>): string {
  switch (entry.selector) {
    case 'all':
      return 'all deferred mail';
    case 'queue-ids': {
      const ids = entry.value.split(',');
      return ids.length === 1 ? `queue id ${entry.value}` : `${ids.length} queue ids`;
    }
    case 'domain':
      return `domain ${entry.value}`;
    case 'sender':
      return `sender ${entry.value}`;
  }
}

const DONE: Record<QueueAuditAction, string> = {
  flush: 'due now',
  hold: 'put on hold',
  release: 'released, due now',
  delete: 'deleted (not sent, no bounce)',
  bounce: 'bounced (not sent)',
};

function recipientsWord(n: number): string {
  return `${n.toLocaleString('en-US')} recipient${n === 1 ? '' : 's'}`;
}

/** What an action did, from its audit row: "Hold (domain example.com): 3 recipients put on hold; ...". */
export function resultWords(entry: QueueAuditEntry, pollIntervalMs: number): string {
  const head = `${ACTION_LABELS[entry.action]} (${selectionWords(entry)}) by ${entry.actor}: ${recipientsWord(entry.recipients)} ${DONE[entry.action]}`;
  if (entry.action === 'flush') return `${head}; the relay sends them within ${pollIntervalMs} ms.`;
  const skipped = entry.skippedSending === 0 ? 'none skipped for being sent' : `${recipientsWord(entry.skippedSending)} skipped: being sent now, left to delivery`;
  return `${head}; ${skipped}.`;
}
