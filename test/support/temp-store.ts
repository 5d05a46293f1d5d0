import { join } from 'node:path';
import { openStore, type Database } from '../../src/store/database.js';
import { makeTempDir } from './temp-dir.js';

/** A fresh store in a temp dir; closing it and removing the dir are pushed onto `cleanups`. */
export function tempStore(cleanups: Array<() => void>): Database {
  const temp = makeTempDir();
  const db = openStore(join(temp.dir, 'rebound.sqlite'));
  cleanups.push(temp.remove, () => db.close());
  return db;
}
