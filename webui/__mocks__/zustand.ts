/**
 * Every store created in a test run starts each test from its initial state (the
 * bulletproof-react / zustand testing pattern): `create` records each store's initial state and
 * `resetAllStores` puts it back. Enabled by `vi.mock("zustand")` in src/testing/setup.ts.
 */
import { act } from "@testing-library/react";
import { vi } from "vitest";
import type * as Zustand from "zustand";

export * from "zustand";

const { create: actualCreate } = await vi.importActual<typeof Zustand>("zustand");

const storeResets = new Set<() => void>();

function createAndRecord<T>(stateCreator: Zustand.StateCreator<T>) {
  const store = actualCreate(stateCreator);
  const initialState = store.getInitialState();
  storeResets.add(() => store.setState(initialState, true));
  return store;
}

export const create = (<T>(stateCreator?: Zustand.StateCreator<T>) =>
  stateCreator === undefined ? createAndRecord : createAndRecord(stateCreator)) as typeof Zustand.create;

export function resetAllStores(): void {
  act(() => storeResets.forEach((reset) => reset()));
}
