import type { DkimAlgorithm } from './key-pair.js';
import type { DkimKeyState } from './key-store.js';

/** One key row as it travels to the other relays: the private key too, since they sign with it. */
export interface SharedDkimKey {
  selector: string;
  algorithm: DkimAlgorithm;
  privateKey: string;
  publicKey: string;
  state: DkimKeyState;
  createdAt: string;
  activatedAt: string | null;
  retiredAt: string | null;
}

/**
 * A domain's DKIM keys after a change (add, rotate, activate, remove), for the shared store
 * (src/shared/). The whole set, not the step: applied in the shared log's order, it leaves every
 * node with the same keys, and the same one active per algorithm.
 */
export interface DkimKeysChange {
  kind: 'dkim-keys';
  domain: string;
  keys: SharedDkimKey[];
}
