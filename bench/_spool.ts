import { mkdtempSync } from 'node:fs';
import { openStore } from '../src/store/database.js';
import { Spool } from '../src/store/spool.js';
const raw = Buffer.alloc(5120, 0x61);
for (const sync of ['FULL', 'NORMAL', 'FULL', 'NORMAL'] as const) {
  const db = openStore(mkdtempSync('/tmp/mb/sp-') + '/s.db', { synchronous: sync });
  const spool = new Spool(db);
  const N = 5500; let q = 0;
  const c0 = process.cpuUsage(); const t0 = performance.now(); let blocked = 0;
  for (let b = 0; b < N / 11; b++) {
    const ps = [];
    for (let i = 0; i < 11; i++) ps.push(spool.enqueue({ queueId: 'Q' + String(q++).padStart(17, '0'), receivedAt: new Date(), mailFrom: 'a@b.test', recipients: [{ address: 'x@d1.test', domain: 'd1.test' }], clientIp: '127.0.0.1', clientHelo: 'h', authUser: null, protocol: 'ESMTP', messageIdHeader: '<x@y>', fromDomain: 'b.test', subject: 's', campaignId: null, receivedHeader: 'Received: from x by y; date\r\n', raw }));
    const b0 = performance.now(); spool.close !== undefined; 
    await Promise.all(ps); blocked += performance.now() - b0;
  }
  const c = process.cpuUsage(c0);
  console.log(sync, 'per message: wall', ((performance.now() - t0) / N).toFixed(3), 'ms, cpu', ((c.user + c.system) / 1000 / N).toFixed(3), 'ms; commits', spool.stats.commits);
  db.close();
}
