// Drives the dashboard in Debian's headless chromium through puppeteer-core,
// for tests/e2e/dashboard.bats. Prints one line per step ("ok STEP" or
// "FAIL STEP: why") and exits non-zero at the first failure.
//
//   node drive.js URL TOKEN_FILE OUT_DIR SERVICE DRAIN_NODE CLUSTER_ID [AUTOSCALED]
//
// AUTOSCALED: a service with an autoscaling range of 1-3, shown on the
// services page. The `skiff` CLI on PATH (SKIFF_HOST, SKIFF_TOKEN_FILE) starts
// a rolling update of SERVICE, whose progress bar the services page shows.
'use strict';
const fs = require('fs');
const { execSync } = require('child_process');
const puppeteer = require('puppeteer-core');

const [url, tokenFile, outDir, service, drainNode, clusterId, autoscaled] = process.argv.slice(2);
const token = fs.readFileSync(tokenFile, 'utf8').trim();

function running(svc, node) {
  let cmd = `docker ps -q --filter label=skiff.cluster=${clusterId} --filter label=skiff.service=${svc} --filter status=running`;
  if (node) cmd += ` --filter label=skiff.node=${node}`;
  return execSync(cmd).toString().split('\n').filter(Boolean).length;
}

async function step(name, fn) {
  try {
    await fn();
    console.log('ok ' + name);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    throw e;
  }
}

// The number of running boxes of svc in the topology view (of node, if given).
const boxes = (page, svc, node) => page.evaluate((s, n) =>
  [...document.querySelectorAll(n ? `.node[data-node="${n}"] .task` : '.task')]
    .filter((b) => b.dataset.service === s && b.dataset.state === 'running').length, svc, node);

async function waitBoxes(page, svc, n, node, timeout) {
  await page.waitForFunction((s, want, nd) =>
    [...document.querySelectorAll(nd ? `.node[data-node="${nd}"] .task` : '.task')]
      .filter((b) => b.dataset.service === s && b.dataset.state === 'running').length === want,
  { timeout: timeout || 60000, polling: 250 }, svc, n, node);
}

// fetch() from the page, with its session cookie: { status, body }.
const pageFetch = (page, method, path, headers, body) => page.evaluate(async (m, p, h, b) => {
  const res = await fetch('/api/v1/' + p, { method: m, credentials: 'same-origin', headers: h,
    body: b === null ? undefined : JSON.stringify(b) });
  return { status: res.status, body: await res.text() };
}, method, path, headers || {}, body === undefined ? null : body);

// No horizontal overflow of the page at the viewport's width.
async function fits(page, width) {
  const wide = await page.evaluate(() => Math.max(document.documentElement.scrollWidth,
    document.body.scrollWidth, document.querySelector('main').scrollWidth));
  if (wide > width) throw new Error(`the page is ${wide} px wide, the screen ${width}`);
}

async function confirm(page) {
  await page.waitForSelector('#confirm[open]');
  await page.click('#confirm-yes');
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-proxy-server'],
  });
  let failed = false;
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));

    await step('the page loads and asks for the token', async () => {
      await page.goto(url, { waitUntil: 'load' });
      await page.waitForSelector('#login:not([hidden]) #token');
    });
    await step('a wrong token is refused with a clear message', async () => {
      await page.type('#token', 'not-the-token');
      await page.click('#login-form button');
      await page.waitForFunction(() => /Wrong token/.test(document.querySelector('#login-error').textContent));
      if (await page.$eval('#nav', (n) => getComputedStyle(n).display !== 'none'))
        throw new Error('the navigation shows after a wrong token');
      await page.screenshot({ path: `${outDir}/login.png` });
    });
    await step('the admin token logs in', async () => {
      await page.$eval('#token', (e) => { e.value = ''; });
      await page.type('#token', token);
      await page.click('#login-form button');
      await page.waitForSelector('#nav:not([hidden])');
      await page.evaluate(() => { window.__noReload = 1; });
    });
    await step('the session is an HttpOnly cookie; the page keeps only the CSRF token', async () => {
      const cookies = await page.cookies();
      const c = cookies.find((x) => x.name === 'skiff_session');
      if (!c) throw new Error('no skiff_session cookie: ' + JSON.stringify(cookies.map((x) => x.name)));
      if (!c.httpOnly || c.sameSite !== 'Strict' || c.path !== '/') throw new Error('cookie flags: ' + JSON.stringify(c));
      const seen = await page.evaluate(() => ({ cookie: document.cookie, store: JSON.stringify(sessionStorage) }));
      if (seen.cookie.includes('skiff_session')) throw new Error('the script can read the session cookie');
      if (seen.store.includes(token)) throw new Error('the admin token is kept in sessionStorage');
      if (!/skiff-csrf/.test(seen.store)) throw new Error('no CSRF token in sessionStorage: ' + seen.store);
    });
    await step('an action without the CSRF token is refused (403) and changes nothing', async () => {
      for (const headers of [{}, { 'X-CSRF-Token': 'f'.repeat(64) }]) {
        const r = await pageFetch(page, 'POST', `services/${service}/scale`,
          Object.assign({ 'Content-Type': 'application/json' }, headers), { replicas: 1 });
        if (r.status !== 403 || !JSON.parse(r.body).error) throw new Error(`answered ${r.status} ${r.body}`);
      }
      const r = await pageFetch(page, 'GET', `services/${service}`);
      if (r.status !== 200) throw new Error(`GET with the cookie answered ${r.status}`);
      const replicas = JSON.parse(r.body).spec.replicas;
      if (replicas !== 3) throw new Error(`replicas are ${replicas}, not 3`);
      await new Promise((res) => setTimeout(res, 1000));
      const n = running(service);
      if (n !== 3) throw new Error(`${n} containers run, not 3`);
    });
    await step('the topology shows 3 ready nodes and the service at 3/3', async () => {
      await page.waitForFunction(() => document.querySelectorAll('.node.ready').length === 3,
        { timeout: 30000, polling: 250 });
      await waitBoxes(page, service, 3);
      await page.waitForFunction(() => document.querySelector('#live').classList.contains('on'));
      await page.screenshot({ path: `${outDir}/cluster.png` });
    });
    await step('the services page lists it at 3/3', async () => {
      await page.click('#nav-services');
      await page.waitForFunction((s) => {
        const r = document.querySelector(`tr[data-service="${s}"] .replicas`);
        return r && r.textContent.startsWith('3/3');
      }, { timeout: 20000 }, service);
      if (autoscaled) {
        await page.waitForFunction((s) => {
          const r = document.querySelector(`tr[data-service="${s}"] .replicas`);
          return r && /\(auto 1-3\)/.test(r.textContent);
        }, { timeout: 20000 }, autoscaled);
      }
      await page.screenshot({ path: `${outDir}/services.png` });
    });
    await step('the service page scales it to 5, with a confirmation', async () => {
      await page.click(`tr[data-service="${service}"] a`);
      await page.waitForSelector('#scale-replicas');
      await page.$eval('#scale-replicas', (e) => { e.value = ''; });
      await page.type('#scale-replicas', '5');
      await page.click('#scale');
      /* The dialog names the count typed, whatever refreshes came between. */
      await page.waitForFunction(() => /to 5\?/.test(document.querySelector('#confirm').textContent),
        { timeout: 5000 });
      await confirm(page);
      await page.waitForFunction(() => /done: Scale/.test(document.querySelector('#toast').textContent),
        { timeout: 20000 });
    });
    await step('5 running boxes appear in the topology without a reload, 5 containers run', async () => {
      await page.click('#nav-cluster');
      await waitBoxes(page, service, 5);
      if (!(await page.evaluate(() => window.__noReload === 1))) throw new Error('the page was reloaded');
      const n = running(service);
      if (n !== 5) throw new Error(`${n} containers run on the engine, not 5`);
      await page.screenshot({ path: `${outDir}/cluster-5.png` });
    });
    await step('the service page shows its tasks, live logs, events and charts', async () => {
      await page.goto(`${url}#/services/${service}`, { waitUntil: 'load' });
      await page.waitForSelector('.charts canvas');
      await page.waitForFunction((s) => document.querySelectorAll('table.tasks tr').length >= 5, { timeout: 20000 }, service);
      await page.waitForFunction((s) => {
        const pre = document.querySelector('#logs');
        return pre && pre.textContent.includes(s + '.');
      }, { timeout: 20000 }, service);
      await new Promise((r) => setTimeout(r, 4500)); /* a few samples */
      await page.screenshot({ path: `${outDir}/service.png` });
      await page.evaluate(() => { window.__noReload = 1; });
    });
    await step('draining a node from the UI moves its boxes away', async () => {
      await page.click('#nav-cluster');
      await page.waitForSelector(`.node[data-node="${drainNode}"] button.availability`);
      const before = await boxes(page, service, drainNode);
      if (before === 0) throw new Error(`${drainNode} runs no task of ${service}`);
      await page.click(`.node[data-node="${drainNode}"] button.availability`);
      await confirm(page);
      await waitBoxes(page, service, 0, drainNode);
      await waitBoxes(page, service, 5);
      if (!(await page.evaluate(() => window.__noReload === 1))) throw new Error('the page was reloaded');
      await page.screenshot({ path: `${outDir}/cluster-drained.png` });
    });
    await step('the events page shows the live stream and filters it', async () => {
      await page.click('#nav-events');
      await page.waitForFunction(() => [...document.querySelectorAll('#event-list li')]
        .some((li) => / node drain /.test(li.textContent)), { timeout: 20000 });
      await page.type('#filter', 'drain');
      await page.waitForFunction(() => {
        const li = [...document.querySelectorAll('#event-list li')];
        return li.length > 0 && li.every((x) => /drain/i.test(x.textContent));
      });
      await page.screenshot({ path: `${outDir}/events.png` });
    });
    await step('a rolling update shows its progress bar on the services page', async () => {
      execSync(`skiff service update -q -d --image skiff-test/web:v2 --update-parallelism 1 --update-delay 3s ${service}`);
      await page.click('#nav-services');
      await page.waitForFunction((s) => {
        const r = document.querySelector(`tr[data-service="${s}"] .update`);
        return r && /updating \d\/5/.test(r.textContent) && r.querySelector('.progress > div');
      }, { timeout: 20000, polling: 250 }, service);
      await page.screenshot({ path: `${outDir}/services-update.png` });
      await page.waitForFunction((s) => {
        const r = document.querySelector(`tr[data-service="${s}"]`);
        return r && /completed/.test(r.textContent) && r.querySelector('.replicas').textContent.startsWith('5/5');
      }, { timeout: 150000, polling: 500 }, service);
    });
    await step('the pages work on a 400 px wide phone', async () => {
      await page.setViewport({ width: 400, height: 800 });
      await page.click('#nav-cluster');
      await waitBoxes(page, service, 5);
      await fits(page, 400);
      await page.screenshot({ path: `${outDir}/cluster-phone.png`, fullPage: true });
      await page.click('#nav-services');
      await page.waitForSelector(`tr[data-service="${service}"]`);
      await fits(page, 400);
      await page.screenshot({ path: `${outDir}/services-phone.png`, fullPage: true });
      await page.click(`tr[data-service="${service}"] a`);
      await page.waitForSelector('#scale-replicas');
      await page.waitForSelector('.charts canvas');
      await fits(page, 400);
      await page.screenshot({ path: `${outDir}/service-phone.png`, fullPage: true });
      await page.setViewport({ width: 1280, height: 800 });
    });
    await step('logging out ends the session: the API answers 401 to its cookie', async () => {
      const before = await page.cookies();
      await page.click('#logout');
      await page.waitForSelector('#login:not([hidden]) #token');
      if (await page.$eval('#nav', (n) => getComputedStyle(n).display !== 'none'))
        throw new Error('the navigation shows after logout');
      const r = await pageFetch(page, 'GET', 'nodes');
      if (r.status !== 401) throw new Error(`GET nodes after logout answered ${r.status}`);
      // the old cookie, sent again, is refused too: the session is gone
      await page.setCookie(...before.filter((x) => x.name === 'skiff_session'));
      const again = await pageFetch(page, 'GET', 'nodes');
      if (again.status !== 401) throw new Error(`the old cookie answered ${again.status}`);
      const stored = await page.evaluate(() => JSON.stringify(sessionStorage));
      if (/skiff-csrf/.test(stored)) throw new Error('the CSRF token is still kept');
    });
    await step('no script error on any page', async () => {
      if (errors.length) throw new Error(errors.join('; '));
    });
  } catch (e) {
    failed = true;
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
})();
