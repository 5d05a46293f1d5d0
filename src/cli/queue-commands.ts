import { Option, type Command } from 'commander';
import { OperatorError } from '../errors.js';
import type { QueueAction, QueueActionResult, QueueSelectorInput } from '../store/queue-actions.js';
import { cliActor, configFrom, configOption, openExistingStore } from './common.js';

interface ActionOptions {
  config?: string;
  queueId?: string[];
  domain?: string;
  sender?: string;
  json?: boolean;
}

interface ActionText {
  description: string;
  /** What happened to the changed recipients, after their count: "held". */
  done: string;
}

const ACTIONS: Record<QueueAction, ActionText> = {
  hold: {
    description: 'put queued and deferred mail on hold, as postsuper -h: the relay does not send it until released',
    done: 'put on hold',
  },
  release: {
    description: 'release held mail, as postsuper -H: queued again and due now; the running relay sends it at its next poll',
    done: 'released (due now)',
  },
  delete: {
    description: 'delete queued, deferred and held mail, as postsuper -d: never sent, no bounce, no webhook, no suppression; kept for history',
    done: 'deleted',
  },
  bounce: {
    description: 'bounce queued, deferred and held mail now, unsent: a permanent_fail event and webhook naming you; the address is not suppressed',
    done: 'bounced',
  },
};

/** The one selector the flags give, or an error naming the flags. */
function selectorOf(options: ActionOptions): QueueSelectorInput {
  const given = [
    options.queueId !== undefined ? '--queue-id' : null,
    options.domain !== undefined ? '--domain' : null,
    options.sender !== undefined ? '--sender' : null,
  ].filter((flag) => flag !== null);
  if (given.length === 0) throw new OperatorError('select the mail: give --queue-id ID..., --domain DOMAIN or --sender ADDRESS (exactly one)');
  if (given.length > 1) throw new OperatorError(`give only one of --queue-id, --domain, --sender (got ${given.join(' and ')})`);
  if (options.queueId !== undefined) return { queueIds: options.queueId };
  if (options.domain !== undefined) return { domain: options.domain };
  return { sender: options.sender as string };
}

function selectionWords(result: QueueActionResult): string {
  const { selector } = result;
  if (selector.by === 'domain') return `domain ${selector.domain}`;
  if (selector.by === 'sender') return `sender ${selector.sender === '' ? '<>' : selector.sender}`;
  return selector.queueIds.length === 1 ? `queue id ${selector.queueIds[0]}` : `${selector.queueIds.length} queue ids`;
}

/**
 * rebound queue hold|release|delete|bounce: the store's queue actions (src/store/queue-actions.ts),
 * audited as cli:<user>. `queue` itself (the summary) is the parent command.
 */
export function registerQueueActionCommands(queue: Command): void {
  for (const action of Object.keys(ACTIONS) as QueueAction[]) {
    const text = ACTIONS[action];
    queue
      .command(action)
      .description(text.description)
      .addOption(new Option('--queue-id <ids...>', 'the recipients of these messages (queue ids as `rebound queue` prints them)'))
      .addOption(new Option('--domain <domain>', 'the recipients at this domain (exactly it, not its subdomains)'))
      .addOption(new Option('--sender <address>', 'the recipients of mail from this envelope sender; <> for the null sender'))
      .addOption(configOption())
      .option('--json', 'print the result as JSON')
      .action(async (options: ActionOptions) => {
        const selector = selectorOf(options);
        const parent = queue.opts() as { config?: string };
        const config = await configFrom({ config: options.config ?? parent.config });
        const { QUEUE_ACTION_FUNCTIONS } = await import('../store/queue-actions.js');
        const db = await openExistingStore(config);
        try {
          const result = await QUEUE_ACTION_FUNCTIONS[action](db, selector, cliActor());
          if (options.json) {
            console.log(JSON.stringify(result, null, 2));
            return;
          }
          console.log(`${action} (${selectionWords(result)}): ${result.recipients} recipient(s) ${text.done}`);
          if (result.skipped.sending > 0) {
            console.log(`skipped: ${result.skipped.sending} recipient(s) being sent now, left to delivery; run again once they are back in the queue if they are deferred`);
          }
          if (action === 'release' && result.recipients > 0) {
            console.log(`the running relay sends them within delivery.pollIntervalMs (${config.delivery.pollIntervalMs} ms)`);
          }
        } finally {
          db.close();
        }
      });
  }
}
