// When the writer does its work behind the log (src/log/follower.ts): soon after a few events, at
// once after a burst, step by step through a backlog, and, for the digests, only once the log is quiet.
import { describe, expect, test } from "bun:test";
import { Follower } from "../src/log/follower.ts";

const STEP = 100;
const DELAY_MS = 40;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Waits until `done()` holds, for at most two seconds (timers on a loaded machine run late). */
async function until(done: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 2000; !done() && Date.now() < deadline; ) await sleep(5);
}

/** Work over a counter of waiting events that does STEP of them a step, as the copiers behave. */
function backlog(waiting: number) {
  const state = { waiting, steps: 0, failNext: false };
  const work = () => {
    state.steps++;
    if (state.failNext) {
      state.failNext = false;
      throw new Error("database is locked");
    }
    const done = Math.min(STEP, state.waiting);
    state.waiting -= done;
    return done === STEP;
  };
  return { state, work };
}

describe("Follower", () => {
  test("a few events wait for the delay; a burst is done at once", async () => {
    const { state, work } = backlog(0);
    const follower = new Follower(work, { eagerAt: STEP, delayMs: DELAY_MS, quiet: false });
    state.waiting += 5;
    follower.appended(5);
    state.waiting += 5;
    follower.appended(5);
    expect(state.steps).toBe(0);
    await sleep(DELAY_MS * 3);
    expect(state).toEqual({ waiting: 0, steps: 1, failNext: false });

    state.waiting += STEP - 1;
    follower.appended(STEP - 1);
    expect(state.steps).toBe(1);
    state.waiting += 1;
    follower.appended(1);
    expect(state.steps).toBe(2);
    expect(state.waiting).toBe(0);
    await sleep(DELAY_MS * 2);
    // The last step did a whole STEP, so one more looked for the rest.
    expect(state).toEqual({ waiting: 0, steps: 3, failNext: false });
  });

  test("a backlog goes step by step, letting other work in between; a failed step is tried again", async () => {
    const { state, work } = backlog(STEP * 2 + 10);
    const follower = new Follower(work, { eagerAt: STEP, delayMs: DELAY_MS, quiet: false });
    follower.step();
    expect(state.steps).toBe(1);
    expect(state.waiting).toBe(STEP + 10);
    await until(() => state.steps === 3);
    await sleep(DELAY_MS * 2);
    expect(state).toEqual({ waiting: 0, steps: 3, failNext: false });

    state.waiting = 3;
    state.failNext = true;
    follower.appended(3);
    await sleep(DELAY_MS * 4);
    expect(state).toEqual({ waiting: 0, steps: 5, failNext: false });
  });

  test("quiet: commits that keep coming put the work off until they stop, or until a burst's worth waits", async () => {
    const { state, work } = backlog(0);
    const quietMs = 400;
    const follower = new Follower(work, { eagerAt: STEP, delayMs: quietMs, quiet: true });
    for (let i = 0; i < 12; i++) {
      state.waiting += 1;
      follower.appended(1);
      await sleep(quietMs / 8);
    }
    // Commits for longer than a delay, none of them a delay after the one before.
    expect(state.steps).toBe(0);
    await sleep(quietMs * 3);
    expect(state).toEqual({ waiting: 0, steps: 1, failNext: false });

    state.waiting += STEP;
    follower.appended(STEP);
    expect(state.steps).toBe(2);
  });

  test("quiet: a run of steps under way is not put off by the commits that go between its steps", async () => {
    const { state, work } = backlog(STEP * 5);
    const follower = new Follower(work, { eagerAt: STEP, delayMs: DELAY_MS * 10, quiet: true });
    follower.step();
    for (let i = 0; i < 5; i++) {
      follower.appended(1);
      await sleep(1);
    }
    await until(() => state.waiting === 0 && state.steps === 6);
    expect(state.waiting).toBe(0);
    expect(state.steps).toBe(6);
  });

  test("with a backlog it can read, the work goes by it (other writers' events count), not by the commits' counts", () => {
    const { state, work } = backlog(0);
    const follower = new Follower(work, { eagerAt: STEP, delayMs: DELAY_MS * 100, quiet: false, backlog: () => state.waiting });
    state.waiting = STEP + 3; // appended by another writer
    follower.appended(1);
    expect(state.steps).toBe(1);
    follower.finish();
  });

  test("after a failed step, no step until the delay is up, however much waits", async () => {
    const { state, work } = backlog(0);
    const follower = new Follower(work, { eagerAt: STEP, delayMs: 200, quiet: false });
    state.waiting = STEP;
    state.failNext = true;
    follower.appended(STEP);
    expect(state.steps).toBe(1);
    state.waiting += STEP;
    follower.appended(STEP);
    follower.appended(STEP);
    expect(state.steps).toBe(1);
    await until(() => state.waiting === 0);
    expect(state.waiting).toBe(0);
  });

  test("finish does everything left, without waiting", () => {
    const { state, work } = backlog(STEP * 3 + 1);
    const follower = new Follower(work, { eagerAt: STEP, delayMs: DELAY_MS, quiet: false });
    follower.appended(1);
    follower.finish();
    expect(state).toEqual({ waiting: 0, steps: 4, failNext: false });
  });
});
