import type { Database } from 'better-sqlite3';
import type { Resolver } from 'node:dns/promises';
import type { VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import type { DeliveryConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { WalSync } from '../store/wal-sync.js';
import type { UnsubscribeSettings } from '../unsubscribe/index.js';
import { DkimKeyring } from '../dkim/keyring.js';
import { DeliveryState } from './delivery-state.js';
import { DkimSigner } from './dkim-signing.js';
import { createResolver } from './mail-hosts.js';
import { NextHopResolver } from './next-hop.js';
import { ResolverHealth } from './resolver-health.js';
import { Shaper } from './shaper.js';
import { loadShapingRules } from './shaping-rules.js';
import { DeliveryScheduler } from './scheduler.js';
import { InlineSender, type BatchSender } from './sender.js';
import { ThreadSender } from './thread-sender.js';
import { TlsPolicies } from './tls-policies.js';

export interface DeliveryStage {
  /** New mail was committed: look for due work now rather than at the next poll. */
  wake(): void;
  stop(timeoutMs: number): Promise<void>;
}

/** Delivery's DNS resolver, and the canary check that says whether it can be believed. */
export interface DeliveryDns {
  resolver: Resolver;
  health: ResolverHealth;
}

/** Made before the stages start, so the admin server can show the resolver's health too. */
export function deliveryDns(settings: DeliveryConfig, logger: Logger): DeliveryDns {
  const { dns } = settings;
  const resolver = createResolver(dns.servers, dns.timeoutMs);
  const health = new ResolverHealth(
    resolver,
    { canaries: dns.canaries, recheckMs: dns.canaryRecheckSeconds * 1000 },
    logger.child({ stage: 'delivery' }),
  );
  return { resolver, health };
}

/** Starts the delivery worker: it picks up due recipients (and those a crash left in flight). */
export function startDelivery(
  config: Config,
  db: Database,
  verp: VerpSettings,
  unsubscribe: UnsubscribeSettings,
  logger: Logger,
  walSync: WalSync | null = null,
  dns: DeliveryDns = deliveryDns(config.delivery, logger),
): DeliveryStage {
  const log = logger.child({ stage: 'delivery' });
  const settings = config.delivery;
  const nextHops = new NextHopResolver(settings.routes, dns.resolver, settings.port, settings.dns.cacheSeconds * 1000, dns.health);
  const heloName = settings.heloName ?? config.hostname;
  const sender: BatchSender = settings.sendThread
    ? new ThreadSender({ settings, heloName, logLevel: config.log.level }, log)
    : new InlineSender(settings, heloName, log);
  const state = new DeliveryState(db, config, walSync);
  // The keys are read on this stage's own store connection (on its thread, with stageThread).
  const dkim = config.dkim.enabled ? new DkimSigner(new DkimKeyring(db, config.dkim, log.child({ component: 'dkim' })), log) : null;
  const shaper = new Shaper(loadShapingRules(settings.shapingFile));
  const tlsPolicies = new TlsPolicies(settings, db, dns.resolver, log.child({ component: 'tls-policy' }));
  const scheduler = new DeliveryScheduler(config, state, nextHops, sender, verp, unsubscribe, log, dkim, shaper, tlsPolicies);
  scheduler.start();
  log.info({ sendThread: settings.sendThread, concurrency: settings.concurrency, perDomainConcurrency: settings.perDomainConcurrency, routes: Object.keys(settings.routes) }, 'delivery started');
  return {
    wake: () => scheduler.wake(),
    stop: async (timeoutMs) => {
      await scheduler.stop(timeoutMs);
      dns.health.stop();
      state.close();
      // Claimed but never sent: back in the queue now rather than at the next start.
      const requeued = state.recoverInFlight();
      log.info({ requeued }, 'delivery stopped');
    },
  };
}
