import { startPostgres } from '/work/main/test/support/postgres.ts';
const p = await startPostgres();
console.log(p.url);
process.on('SIGTERM', async () => { await p.stop(); process.exit(0); });
setInterval(() => {}, 1 << 30);
