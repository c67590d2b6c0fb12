import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { trackEventLoopDelay } from '../src/observe/eventLoopDelay.js';

function blockFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* the event loop is blocked */ }
}

it('a block of the event loop is counted, also when the window turns before the delay monitor runs again', async () => {
  // A timer due as the window turns blocks. Due just before the window's, it leaves the window's
  // timer overdue, to run right after it in the same turn of the timers, before the delay monitor's
  // own timer has run since the block; due with it, it runs right after the window turned. Which
  // runs first depends on the monitor's phase: five offsets, a tracker each.
  for (const dueAt of [996, 998, 1000, 1001, 1002]) {
    const tracker = trackEventLoopDelay();
    try {
      await new Promise<void>((resolve) => setTimeout(() => {
        blockFor(400);
        resolve();
      }, dueAt));
      await sleep(50);
      assert.ok(tracker.maxMs() >= 380, `a block at ${dueAt} ms: longest delay seen ${tracker.maxMs()} ms`);
    } finally {
      tracker.stop();
    }
  }
});

it('a block in the middle of a window is counted', async () => {
  const tracker = trackEventLoopDelay();
  try {
    await sleep(300);
    blockFor(400);
    await sleep(50);
    assert.ok(tracker.maxMs() >= 380, `longest delay seen: ${tracker.maxMs()} ms`);
    await sleep(2100);
    assert.ok(tracker.maxMs() >= 380, `still within the window: ${tracker.maxMs()} ms`);
  } finally {
    tracker.stop();
  }
});

it('a block is remembered for the length of the window, and forgotten a second after', async () => {
  const tracker = trackEventLoopDelay(2);
  try {
    await sleep(300);
    blockFor(300);
    await sleep(50);
    assert.ok(tracker.maxMs() >= 280, `longest delay seen: ${tracker.maxMs()} ms`);
    await sleep(1500);
    assert.ok(tracker.maxMs() >= 280, `remembered within 2 s of the block: ${tracker.maxMs()} ms`);
    await sleep(1800);
    assert.ok(tracker.maxMs() < 200, `forgotten 3 s after the block: ${tracker.maxMs()} ms`);
  } finally {
    tracker.stop();
  }
});
