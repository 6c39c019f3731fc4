// Plays one format of the demo page in headless Chromium and reports what happened as JSON:
//   node play.mjs PAGE_URL KIND [SECONDS] [cues]
// KIND is a data-kind of the page's buttons. Exit code 0 when playback advanced at least
// SECONDS (default 5) of media time from where it started (a live stream starts near its live
// edge) without a fatal player error, and, with `cues`, when the player also put at least one
// subtitle cue on the video's text tracks.
import puppeteer from "puppeteer-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [pageUrl, kind, secondsArg, wantCues, latencyArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 5);
// `latency=<warm-up s>:<measured s>`: after playing has started and the warm-up passed, the
// player's own live latency is sampled every 250 ms for the measured seconds (reported as
// p50 / p95 / max, with the stalls counted meanwhile).
const [warmUp, measured] = (latencyArg || "").startsWith("latency=")
  ? latencyArg.slice(8).split(":").map(Number) : [0, 0];
const profile = mkdtempSync(join(tmpdir(), "origin-chromium-"));
const browser = await puppeteer.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  userDataDir: profile,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--autoplay-policy=no-user-gesture-required"],
});
const result = { kind, ok: false, currentTime: 0, played: 0, cues: [], errors: [], console: [] };
let startedAt = null;
try {
  const page = await browser.newPage();
  page.on("console", (m) => result.console.push(m.text()));
  page.on("pageerror", (e) => result.errors.push(String(e)));
  // Failed requests by URL (the console names only their status).
  result.failed = [];
  page.on("response", (r) => { if (r.status() >= 400) result.failed.push(r.status() + " " + r.url()); });
  await page.goto(pageUrl, { waitUntil: "load", timeout: 30000 });
  await page.evaluate((k) => document.querySelector(`button[data-kind="${k}"]`).click(), kind);
  const deadline = Date.now() + 60000 + (warmUp + measured) * 1000;
  while (Date.now() < deadline) {
    const state = await page.evaluate(() => ({
      t: document.getElementById("video").currentTime,
      status: document.getElementById("status").textContent,
      error: document.getElementById("video").error && document.getElementById("video").error.message,
      cues: window.cuesSeen || [],
      ads: window.adCues || [],
    }));
    result.currentTime = state.t;
    // VOD starts at 0; a live stream wherever its player joined it.
    if (startedAt === null && state.t > 0) startedAt = state.t <= 0.5 ? 0 : state.t;
    result.played = startedAt === null ? 0 : state.t - startedAt;
    result.cues = state.cues;
    result.ads = state.ads;
    result.status = state.status;
    if (state.error) result.errors.push("media error: " + state.error);
    if (/error/i.test(state.status)) result.errors.push(state.status);
    const cuesDone = wantCues !== "cues" || state.cues.length > 0;
    if (measured > 0 && result.played >= warmUp) {
      const sample = await page.evaluate(() => ({ l: window.liveLatency(), stalls: window.stalls }));
      result.latencies = result.latencies || [];
      if (result.stallsAtWarmUp === undefined) result.stallsAtWarmUp = sample.stalls;
      result.stalls = sample.stalls - result.stallsAtWarmUp;
      if (typeof sample.l === "number" && isFinite(sample.l)) result.latencies.push(sample.l);
    }
    const latencyDone = measured === 0 || result.played >= warmUp + measured;
    if (result.errors.length || (result.played >= seconds && cuesDone && latencyDone)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  result.ok = result.errors.length === 0 && result.played >= seconds &&
    (wantCues !== "cues" || result.cues.length > 0);
  if (result.latencies && result.latencies.length) {
    const sorted = [...result.latencies].sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    result.latency = { p50: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1],
                       samples: sorted.length };
    delete result.latencies;
  } else if (measured > 0) {
    result.errors.push("the player reported no live latency");
    result.ok = false;
  }
} catch (e) {
  result.errors.push(String(e));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
