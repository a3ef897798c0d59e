import { cleanup } from "@testing-library/react";
import { afterEach, beforeEach, vi } from "vitest";

// @ts-expect-error -- the mock (webui/__mocks__/zustand.ts) adds resetAllStores to zustand's exports.
import { resetAllStores } from "zustand";

vi.mock("zustand");

// Every test starts from fresh stores and empty storage.
beforeEach(() => {
  localStorage.clear();
  resetAllStores();
});

afterEach(() => {
  cleanup();
});

afterEach(() => {
  vi.unstubAllGlobals();
});
