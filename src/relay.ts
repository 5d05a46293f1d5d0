import type { AddressInfo } from 'node:net';
import { withGeneratedToken } from './admin/generated-token.js';
import { startAdmin, type AdminServer } from './admin/server.js';
import { linkKeyOf, nodeTagOf, type VerpSettings } from './bounces/verp.js';
import type { Config } from './config/load.js';
import { deliveryDns, startDelivery, type DeliveryStage } from './delivery/index.js';
import { loadShapingRules } from './delivery/shaping-rules.js';
import { readKeyFiles } from './dkim/key-files.js';
import { startDeliveryThread, type ThreadedDeliveryStage } from './delivery/stage-on-thread.js';
import { OperatorError } from './errors.js';
import { startInbound, startReportIntake, type InboundStage, type ReportIntake } from './inbound/index.js';
import { reportParser } from './inbound/parser.js';
import type { Logger } from './logger.js';
import { openStore, type Database } from './store/database.js';
import { storedSecret } from './store/settings.js';
import { Spool, type MessageSpool } from './store/spool.js';
import { startRetentionJob } from './store/retention-job.js';
import { StoreHealth } from './store/store-health.js';
import { ChangeSync, markStoreShared } from './shared/change-sync.js';
import { KnownNodes } from './shared/forwarded-reports.js';
import { WalSync } from './store/wal-sync.js';
import { useWriteLock, WriteLock } from './store/write-lock.js';
import { createSubmissionServer } from './submission/server.js';
import { Unsubscriber, unsubscribeSettings, type UnsubscribeSettings } from './unsubscribe/index.js';
import { ForwardedUnsubscribes, type UnsubscribeHandling } from './unsubscribe/forwarded.js';
import { startWebhooks, type WebhookStage } from './webhooks/index.js';

export interface RunningRelay {
  submission: AddressInfo;
  /** The return-path MX, when inbound.enabled. */
  inbound: AddressInfo | null;
  /** The admin HTTP API, when admin.enabled. */
  admin: AddressInfo | null;
  /** Where accepted mail is committed: on this thread, or on the delivery thread (delivery.stageThread). */
  spool: MessageSpool;
  verp: VerpSettings;
  /** The webhook sender: backlog() and failures() for metrics. */
  webhooks: WebhookStage;
  /** The delivery stage on its own thread (delivery.stageThread), else null. */
  deliveryThread: ThreadedDeliveryStage | null;
  /** Stops every stage in flow order, then closes the database. */
  stop(): Promise<void>;
}

/** Turns "address in use" and friends into a message that names the key to change. */
async function listening<T>(what: string, host: string, port: number, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    throw new OperatorError(`${what} cannot listen on ${host}:${port} (${code ?? (error as Error).message}); pick another ${what}.port or stop what holds it`);
  }
}

/** Starts every stage: the spool, the inbound report listener, the admin API, the submission server, delivery, webhooks. */
export async function startRelay(config: Config, logger: Logger): Promise<RunningRelay> {
  // A dkim.keys file that cannot sign stops the start here (exit code 2, the entry named),
  // before the delivery thread, which reads the files again, would fail at every restart.
  if (config.delivery.enabled && config.dkim.enabled) readKeyFiles(config.dkim);
  // Likewise a broken shaping file (delivery.shapingFile): named here, not at every thread start.
  if (config.delivery.enabled) loadShapingRules(config.delivery.shapingFile);
  const db = openStore(config.store.path, { synchronous: config.store.synchronous });
  const storeHealth = new StoreHealth(db, config.store.path, logger.child({ stage: 'store' })).watch();
  const threadedDelivery = config.delivery.enabled && config.delivery.stageThread;
  // Under FULL, the spool's and delivery's commits are synced off the event loop (WalSync); with
  // the delivery thread, both run there, and sync inside COMMIT (see delivery/stage-thread.ts).
  const walSync = config.store.synchronous === 'FULL' && !threadedDelivery ? new WalSync(config.store.path) : null;
  // A body just committed is handed to delivery from memory; with delivery off, nobody would read it.
  const mainSpool = threadedDelivery ? null : new Spool(db, config.store.groupCommitMaxMessages, walSync, config.delivery.enabled);
  // This thread and the delivery stage's hand SQLite's write lock over without its busy sleeps.
  const writeLock = new WriteLock();
  useWriteLock(db, writeLock);
  // Before any stage makes its SuppressionLists: they read whether to queue changes for the shared store.
  const { shared } = config.store;
  const joined = markStoreShared(db, shared.url !== null);
  if (joined > 0) logger.info({ entries: joined }, 'this store joins the shared store: its lists and allowlist are queued to be shared');
  const verp = verpSettings(config, db);
  const unsubscribe: UnsubscribeSettings = unsubscribeSettings(config, verp.domain, verp.secret, verp.nodeTag ?? null);
  const changeSync = shared.url === null ? null : new ChangeSync(db, { url: shared.url, nodeName: sharedNodeName(config), catchUpMs: shared.catchUpSeconds * 1000, nodeTag: nodeTagOf(sharedNodeName(config)), linkKey: linkKeyOf(verp.secret), historyDays: config.store.retention.historyDays }, logger.child({ stage: 'shared' }));
  // Requests for other nodes' unsubscribe links are passed on to them through the shared store.
  const knownNodes = changeSync ? new KnownNodes(db) : null;
  const unsubscriber = new Unsubscriber(db, unsubscribe, knownNodes ? (tag) => knownNodes.linkKeyOf(tag) : null);
  const unsubscribeHandling: UnsubscribeHandling = {
    settings: unsubscribe,
    unsubscriber,
    forwarded: knownNodes ? new ForwardedUnsubscribes(db, unsubscribe, unsubscriber, knownNodes, sharedNodeName(config), logger.child({ stage: 'unsubscribe' })) : null,
  };
  let inbound: InboundStage | null = null;
  /** With inbound.enabled false on a shared store: the inbound stage's report handling, without its listener. */
  let forwardedOnly: ReportIntake | null = null;
  let admin: AdminServer | null = null;
  let threaded: ThreadedDeliveryStage | null = null;
  let address: AddressInfo;
  try {
    if (config.inbound.enabled) {
      inbound = await listening('inbound', config.inbound.host, config.inbound.port, () =>
        startInbound(config, db, verp, unsubscribeHandling, reportParser(config.submission.campaignHeader), logger, knownNodes),
      );
      // Reports the other nodes' MX took for this node's tokens come in as if taken here.
      changeSync?.receiveForwardedReports(inbound.receiveForwarded);
    } else if (changeSync) {
      // No MX here, but the other nodes' MX take reports for this node's tokens: store and apply them.
      forwardedOnly = startReportIntake(config, db, verp, reportParser(config.submission.campaignHeader), logger, unsubscribeHandling.forwarded);
      changeSync.receiveForwardedReports(forwardedOnly.receiveForwarded);
    }
    // On its own thread the stage has its own resolver; its health reaches the admin server from there.
    threaded = threadedDelivery ? await startDeliveryThread({ config, verp, unsubscribe, writeLock, storeHealth, logger }) : null;
    const dns = config.delivery.enabled && !threadedDelivery ? deliveryDns(config.delivery, logger) : null;
    if (config.admin.enabled) {
      const stage = threaded;
      const dnsHooks = stage ? { dnsResolver: () => stage.dnsStatus() } : dns ? { dnsResolver: () => dns.health.status() } : {};
      const hooks = changeSync ? { ...dnsHooks, sharedStore: () => changeSync.status() } : dnsHooks;
      admin = await listening('admin', config.admin.host, config.admin.port, () => startAdmin(withGeneratedToken(config, db, logger.child({ stage: 'admin' })), db, logger, hooks, unsubscribeHandling));
    }
    const spool: MessageSpool | null = threaded?.spool ?? mainSpool;
    if (!spool) throw new Error('no spool: delivery runs on its own thread but did not start');
    const submission = createSubmissionServer(config, spool, logger);
    address = await listening('submission', config.submission.host, config.submission.port, () => submission.listen());
    const delivery: DeliveryStage | null = threaded ?? (dns ? startDelivery(config, db, verp, unsubscribe, logger, walSync, dns) : null);
    if (delivery && mainSpool) mainSpool.onCommitted(() => delivery.wake());
    // Runs even with no endpoints, so outbox rows are marked handled instead of piling up for
    // the first endpoint someone adds.
    changeSync?.start();
    const webhooks = startWebhooks(config, db, logger);
    const retention = startRetentionJob(db, config.store.retention, logger);
    const { historyDays } = config.store.retention;
    if (historyDays > 0 && historyDays < config.returnPath.maxAgeDays) {
      logger.warn(
        { historyDays, returnPathMaxAgeDays: config.returnPath.maxAgeDays },
        'store.retention.historyDays is shorter than returnPath.maxAgeDays: a delayed bounce for mail already purged is stored but matches no recipient; raise historyDays',
      );
    }
    logger.info({ store: config.store.path, hostname: config.hostname, returnPathDomain: verp.domain }, 'rebound started');
    const inboundStage = inbound;
    const adminServer = admin;
    return {
      submission: address,
      inbound: inboundStage?.address ?? null,
      admin: adminServer?.address ?? null,
      spool,
      verp,
      webhooks,
      deliveryThread: threaded,
      stop: async () => {
        await adminServer?.stop();
        await submission.close();
        spool.close();
        await delivery?.stop(config.submission.shutdownTimeoutSeconds * 1000);
        // Before the inbound stage: no round may hand a forwarded report to a closed report store.
        await changeSync?.stop();
        await inboundStage?.stop();
        await forwardedOnly?.stop();
        await webhooks.stop();
        await retention.stop();
        await walSync?.close();
        storeHealth.stop();
        await storeHealth.rescued;
        db.close();
        const walSyncs = threaded ? threaded.storeStats().walSyncs : (walSync?.syncs ?? null);
        logger.info({ messages: spool.stats.messages, commits: spool.stats.commits, walSyncs }, 'rebound stopped; store closed');
      },
    };
  } catch (error) {
    await admin?.stop();
    await threaded?.stop(0);
    await inbound?.stop();
    await forwardedOnly?.stop();
    storeHealth.stop();
    db.close();
    throw error;
  }
}

/** The return path's settings; the secret is generated and kept in the store on first start. */
export function verpSettings(config: Config, db: Database): VerpSettings {
  return {
    domain: config.returnPath.domain ?? config.hostname,
    prefix: config.returnPath.prefix,
    secret: storedSecret(db, 'returnPath.secret', config.returnPath.secret),
    maxAgeDays: config.returnPath.maxAgeDays,
    // Sharing one return-path domain, the MX may be another node: the tag says whose token it is.
    nodeTag: config.store.shared.url === null ? null : nodeTagOf(sharedNodeName(config)),
  };
}

/** This node's name in the shared store: store.shared.nodeName, else the hostname. */
export function sharedNodeName(config: Config): string {
  return config.store.shared.nodeName ?? config.hostname;
}
