// Opens report.html files in headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM) over
// file:// with the network cut off, and fails unless each page: attempts no request besides
// itself, logs no console error and throws no page error, shows its sections, has its SVG charts
// in the DOM with drawn elements of non-zero size, and looks drawn on a screenshot (enough
// non-white pixels and colours, the whole page and each chart).
//
// Usage: node check.mjs SCREENSHOT_DIR MIN_CHARTS:report.html [MIN_CHARTS:report.html ...]
import { chromium } from "playwright-core";
import { PNG } from "pngjs";
import { writeFileSync, mkdirSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [outDir, ...pages] = process.argv.slice(2);
if (!outDir || pages.length === 0) {
  console.error("usage: node check.mjs SCREENSHOT_DIR MIN_CHARTS:report.html ...");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

// Share of pixels that are not near-white, and distinct colours (coarsely binned).
function ink(png) {
  const img = PNG.sync.read(png);
  let dark = 0;
  const colours = new Set();
  for (let i = 0; i < img.data.length; i += 4) {
    const [r, g, b] = [img.data[i], img.data[i + 1], img.data[i + 2]];
    if (r < 235 || g < 235 || b < 235) dark++;
    colours.add(((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4));
  }
  return { share: dark / (img.width * img.height), colours: colours.size, width: img.width, height: img.height };
}

async function check(browser, spec) {
  const sep = spec.indexOf(":");
  const minCharts = Number(spec.slice(0, sep));
  const file = resolve(spec.slice(sep + 1));
  const url = pathToFileURL(file).href;
  const problems = [];
  const context = await browser.newContext({ offline: true, viewport: { width: 1400, height: 900 } });
  // Everything but the page itself is refused and counted.
  await context.route("**/*", (route) => {
    if (route.request().url() === url) return route.continue();
    problems.push(`request attempted: ${route.request().url()}`);
    return route.abort();
  });
  const page = await context.newPage();
  page.on("request", (r) => {
    if (r.url() !== url) problems.push(`request: ${r.url()}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(url, { waitUntil: "load" });
  const dom = await page.evaluate(() => {
    const charts = [...document.querySelectorAll("figure svg")].map((svg) => {
      const box = svg.getBoundingClientRect();
      const drawn = [...svg.querySelectorAll("path, polyline, line, rect, circle, polygon")].filter((e) => {
        const b = e.getBoundingClientRect();
        return b.width > 0 || b.height > 0;
      });
      return { width: box.width, height: box.height, drawn: drawn.length, lines: svg.querySelectorAll("polyline, path").length };
    });
    const headings = [...document.querySelectorAll("h2")].map((h) => h.textContent);
    return { charts, headings, title: document.title, tables: document.querySelectorAll("table").length };
  });
  if (dom.charts.length < minCharts) problems.push(`${dom.charts.length} charts, want at least ${minCharts}`);
  dom.charts.forEach((c, i) => {
    if (!(c.width > 100 && c.height > 100)) problems.push(`chart ${i}: size ${c.width}x${c.height}`);
    if (c.drawn < 20 || c.lines < 3) problems.push(`chart ${i}: ${c.drawn} drawn elements, ${c.lines} lines`);
  });
  if (dom.tables < 2) problems.push(`${dom.tables} tables`);
  if (!dom.title) problems.push("no title");
  const name = `${basename(dirname(file))}-${basename(file, ".html")}`;
  const shot = await page.screenshot({ fullPage: true });
  writeFileSync(`${outDir}/${name}.png`, shot);
  const whole = ink(shot);
  if (whole.share < 0.01 || whole.colours < 8) problems.push(`page looks blank: ${JSON.stringify(whole)}`);
  const figures = await page.locator("figure svg").all();
  for (const [i, f] of figures.entries()) {
    const fig = ink(await f.screenshot());
    if (fig.share < 0.02 || fig.colours < 4) problems.push(`chart ${i} looks blank: ${JSON.stringify(fig)}`);
  }
  await context.close();
  console.log(
    `${file}: ${dom.charts.length} charts (${dom.charts.map((c) => c.drawn).join(", ")} drawn elements), ` +
      `${dom.tables} tables, sections [${dom.headings.join(" | ")}], page ${whole.width}x${whole.height} ` +
      `${(whole.share * 100).toFixed(1)} % ink, ${whole.colours} colours: ${problems.length ? "FAILED" : "ok"}`,
  );
  for (const p of problems) console.log(`  - ${p}`);
  return problems.length === 0;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
let ok = true;
try {
  for (const spec of pages) ok = (await check(browser, spec)) && ok;
} finally {
  await browser.close();
}
process.exit(ok ? 0 : 1);
