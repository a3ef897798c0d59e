/**
 * Storage for the persisted studio state. Sessions carry their audio, which quickly outgrows
 * localStorage's few megabytes, so IndexedDB is used where available (localStorage otherwise,
 * e.g. in unit tests). Writes are debounced: a streaming generation changes the store many times
 * a second, and serialising the whole history on every change would stall playback.
 */
import type { StateStorage } from "zustand/middleware";

const DB_NAME = "chatterbox-studio";
const STORE_NAME = "state";

function openDatabase(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE_NAME);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function indexedDbStorage(): StateStorage {
  let database: Promise<IDBDatabase> | null = null;
  const run = async <T>(mode: IDBTransactionMode, action: (store: IDBObjectStore) => IDBRequest<T>) => {
    database ??= openDatabase();
    const db = await database;
    return new Promise<T>((resolve, reject) => {
      const request = action(db.transaction(STORE_NAME, mode).objectStore(STORE_NAME));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  };
  return {
    getItem: async (name) => ((await run("readonly", (s) => s.get(name))) as string | undefined) ?? null,
    setItem: async (name, value) => void (await run("readwrite", (s) => s.put(value, name))),
    removeItem: async (name) => void (await run("readwrite", (s) => s.delete(name))),
  };
}

/** Writes once changes pause for `delayMs`, but at least every `maxWaitMs`, and on page hide. */
function debouncedWrites(inner: StateStorage, delayMs: number, maxWaitMs: number): StateStorage {
  const pending = new Map<string, string>();
  let timer: ReturnType<typeof setTimeout> | null = null;
  let firstPendingAt: number | null = null;
  const flush = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    firstPendingAt = null;
    for (const [name, value] of pending) void inner.setItem(name, value);
    pending.clear();
  };
  if (typeof window !== "undefined") window.addEventListener("pagehide", flush);
  return {
    getItem: (name) => pending.get(name) ?? inner.getItem(name),
    setItem: (name, value) => {
      pending.set(name, value);
      firstPendingAt ??= Date.now();
      if (timer !== null) clearTimeout(timer);
      const waitedMs = Date.now() - firstPendingAt;
      timer = setTimeout(flush, Math.max(0, Math.min(delayMs, maxWaitMs - waitedMs)));
    },
    removeItem: (name) => {
      pending.delete(name);
      return inner.removeItem(name);
    },
  };
}

/**
 * Storage for one persisted store. `readsFrom` names an older key to read while the store's own has
 * never been written (the studio once kept all its state under one key; each store now has its own).
 */
export function createStudioStorage({ readsFrom, delayMs = 300, maxWaitMs = 3000 }: {
  readsFrom?: string;
  delayMs?: number;
  maxWaitMs?: number;
} = {}): StateStorage {
  const inner = typeof indexedDB !== "undefined" ? indexedDbStorage() : localStorage;
  const storage = debouncedWrites(inner, delayMs, maxWaitMs);
  if (readsFrom === undefined) return storage;
  return {
    ...storage,
    getItem: (name) => {
      const own = storage.getItem(name);
      // Synchronous storage (localStorage) stays synchronous, so hydration does too.
      return own instanceof Promise
        ? own.then((value) => value ?? storage.getItem(readsFrom))
        : (own ?? storage.getItem(readsFrom));
    },
  };
}
