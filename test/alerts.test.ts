// deploy/alerts.yml, the Prometheus alerting rules operators load, checked by Prometheus' own
// promtool: the rules parse and are valid (`promtool check rules`), and behave as their unit tests
// in deploy/alerts.test.yml say (`promtool test rules`: each alert firing, with its labels and
// templated annotations, and not firing where it must not). Also checked here: every rule has a
// `for:`, a severity and both annotations, and every alert is tested both firing and not firing.
// Prerequisite (promtool, from Debian's prometheus package): test/prerequisites.sh, run by `npm test`.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const DEPLOY = join(import.meta.dir, "..", "deploy");

function promtool(...args: string[]) {
  const run = Bun.spawnSync(["promtool", ...args], { cwd: DEPLOY, stdout: "pipe", stderr: "pipe" });
  // promtool reports to stdout on success and to stderr on failure: both, so a failure is legible.
  return { exitCode: run.exitCode, output: `${run.stdout.toString()}${run.stderr.toString()}` };
}

interface Rule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  alertname: string;
  exp_alerts?: unknown[];
}

const rules = (Bun.YAML.parse(readFileSync(join(DEPLOY, "alerts.yml"), "utf8")) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const unitTests = (Bun.YAML.parse(readFileSync(join(DEPLOY, "alerts.test.yml"), "utf8")) as { tests: { alert_rule_test?: RuleTest[] }[] }).tests.flatMap(
  (t) => t.alert_rule_test ?? [],
);

describe("deploy/alerts.yml", () => {
  test("promtool check rules: valid", () => {
    const { exitCode, output } = promtool("check", "rules", "alerts.yml");
    expect(output).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(output).not.toContain("FAILED");
    expect(exitCode).toBe(0);
  });

  test("promtool test rules: every unit test in alerts.test.yml passes", () => {
    const { exitCode, output } = promtool("test", "rules", "alerts.test.yml");
    expect(output).not.toContain("FAILED");
    expect(output).toContain("SUCCESS");
    expect(exitCode).toBe(0);
  });

  test("every rule is an alert with a for:, a severity, a summary and a description", () => {
    expect(rules.length).toBe(9);
    for (const rule of rules) {
      expect({ alert: rule.alert, for: typeof rule.for }).toEqual({ alert: expect.stringMatching(/^IcrReceiver/), for: "string" });
      expect([rule.alert, rule.labels?.severity]).toEqual([rule.alert, expect.stringMatching(/^(warning|critical)$/)]);
      expect([rule.alert, Object.keys(rule.annotations ?? {}).sort()]).toEqual([rule.alert, ["description", "summary"]]);
    }
  });

  test("every alert is unit-tested both firing and not firing", () => {
    for (const { alert } of rules) {
      const cases = unitTests.filter((t) => t.alertname === alert);
      const firing = cases.some((t) => (t.exp_alerts ?? []).length > 0);
      const silent = cases.some((t) => (t.exp_alerts ?? []).length === 0);
      expect({ alert, firing, silent }).toEqual({ alert, firing: true, silent: true });
    }
    // and nothing tests an alert that does not exist (promtool would just expect it silent)
    const names = new Set(rules.map((r) => r.alert));
    expect(unitTests.map((t) => t.alertname).filter((name) => !names.has(name))).toEqual([]);
  });
});
