// Waiting in a test for something another process or thread does: polled, bounded, and named in
// the failure.

/** Resolves once `condition` holds; throws "timed out waiting for <what>" after `ms`. */
export async function until(condition: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}
