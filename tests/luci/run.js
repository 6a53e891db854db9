// Drives luci-app-leash's real view files in headless Chromium, on the
// stand-in for LuCI (standin.html, standin.js), and prints what a person
// sees as one JSON object. The page's rpc calls go to /ubus on this
// script's HTTP server (127.0.0.1 only), which runs the real rpcd plugin
// (`call METHOD`, arguments on stdin) against the lab daemon.
//
// env: LEASH_RPCD_PLUGIN, LEASH_BIN, LEASH_SOCKET (the plugin's), LUCI_HTDOCS,
// SHOTS (screenshot dir), QUARANTINE_MAC, DST_MAC, DST_ADDR, CHROMIUM.
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const { chromium } = require('playwright-core');

const env = (k) => {
	if (!process.env[k])
		throw new Error(`run.js: ${k} is not set`);
	return process.env[k];
};
const htdocs = env('LUCI_HTDOCS');
const shots = env('SHOTS');
const calls = [];

function plugin(method, params) {
	return new Promise((resolve) => {
		const p = spawn(env('LEASH_RPCD_PLUGIN'), ['call', method], { env: process.env });
		let out = '';
		p.stdout.on('data', (d) => (out += d));
		p.on('close', (code) => {
			calls.push({ method, params, code });
			resolve(out);
		});
		p.stdin.end(JSON.stringify(params || {}));
	});
}

const server = http.createServer((req, res) => {
	const url = new URL(req.url, 'http://127.0.0.1');
	const send = (code, type, body) => {
		res.writeHead(code, { 'Content-Type': type });
		res.end(body);
	};
	if (req.method == 'POST' && url.pathname == '/ubus') {
		let body = '';
		req.on('data', (d) => (body += d));
		req.on('end', async () => {
			let q;
			try {
				q = JSON.parse(body);
			} catch (e) {
				return send(400, 'text/plain', 'bad request');
			}
			if (q.object != 'leash')
				return send(404, 'text/plain', 'no such object');
			send(200, 'application/json', await plugin(q.method, q.params));
		});
		return;
	}
	if (url.pathname.startsWith('/cgi-bin/luci/admin/services/leash/'))
		return send(200, 'text/html', fs.readFileSync(path.join(__dirname, 'standin.html')));
	if (url.pathname == '/standin/standin.js')
		return send(200, 'application/javascript', fs.readFileSync(path.join(__dirname, 'standin.js')));
	const m = url.pathname.match(/^\/luci-static\/resources\/view\/leash\/([a-z]+\.js)$/);
	if (m && fs.existsSync(path.join(htdocs, 'luci-static/resources/view/leash', m[1])))
		return send(200, 'application/javascript', fs.readFileSync(path.join(htdocs, 'luci-static/resources/view/leash', m[1])));
	send(404, 'text/plain', 'not found');
});

async function main() {
	await new Promise((r) => server.listen(0, '127.0.0.1', r));
	const base = `http://127.0.0.1:${server.address().port}/cgi-bin/luci/admin/services/leash`;
	const userDir = fs.mkdtempSync(path.join(shots, 'chromium-profile-'));
	// A fresh profile (playwright passes it as --user-data-dir).
	const browser = await chromium.launchPersistentContext(userDir, {
		executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
		headless: true,
		viewport: { width: 1280, height: 800 },
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
			'--disable-background-networking', '--disable-component-update', '--disable-sync'],
	});
	const seen = {};
	try {
		const page = await browser.newPage();
		const errors = [];
		page.on('pageerror', (e) => errors.push(String(e)));
		const open = async (view, query) => {
			await page.goto(`${base}/${view}${query || ''}`);
			await page.waitForSelector(`body[data-rendered]`, { timeout: 20000 });
			const r = await page.getAttribute('body', 'data-rendered');
			if (r != view)
				throw new Error(`view ${view} did not render: ${await page.textContent('#maincontent')}`);
		};

		// Overview: the mode and the counters, the alerts (or why not).
		await open('overview');
		seen.overview = {
			mode: await page.textContent('#leash-status td[data-key="Mode"]'),
			devices: await page.textContent('#leash-status td[data-key="Devices"]'),
			alerts: await page.textContent('#leash-alerts'),
		};
		await page.screenshot({ path: path.join(shots, 'overview.png'), fullPage: true });

		// Devices: one row per device; Quarantine on one of them.
		await open('devices');
		const rows = () => page.$$eval('#leash-devices tr[data-mac]', (trs) => trs.map((tr) => ({
			mac: tr.dataset.mac, cells: [...tr.querySelectorAll('td')].slice(0, 6).map((td) => td.textContent),
		})));
		seen.devices = await rows();
		await page.screenshot({ path: path.join(shots, 'devices.png'), fullPage: true });
		const qmac = env('QUARANTINE_MAC');
		await page.click(`#leash-devices tr[data-mac="${qmac}"] button:has-text("Quarantine")`);
		await page.waitForSelector(`#leash-devices tr[data-mac="${qmac}"] td.leash-state:has-text("quarantined")`, { timeout: 10000 });
		seen.devices_after_quarantine = await rows();
		await page.screenshot({ path: path.join(shots, 'devices-quarantined.png'), fullPage: true });

		// Destinations of a device: the row, Explain, then Consent at a click.
		await open('destinations', `?device=${encodeURIComponent(env('DST_MAC'))}`);
		const drow = `#leash-destinations tr[data-address="${env('DST_ADDR')}"]`;
		await page.waitForSelector(drow, { timeout: 10000 });
		const cells = () => page.$$eval(`${drow} td`, (tds) => tds.slice(0, 8).map((td) => td.textContent));
		seen.destination = await cells();
		await page.screenshot({ path: path.join(shots, 'destinations.png'), fullPage: true });
		await page.click(`${drow} button:has-text("Explain")`);
		await page.waitForSelector('#leash-explain', { timeout: 10000 });
		seen.explain = await page.$$eval('#leash-explain tr', (trs) => Object.fromEntries(trs.map((tr) => [...tr.children].map((td) => td.textContent))));
		await page.screenshot({ path: path.join(shots, 'explain.png'), fullPage: true });
		await page.click('#modal_overlay button:has-text("Close")');
		await page.click(`${drow} button:has-text("Consent")`);
		// The view answers a consent with the daemon's explain of it.
		await page.waitForSelector('#leash-explain td:text-is("allow")', { timeout: 10000 });
		seen.explain_after_consent = await page.$$eval('#leash-explain tr', (trs) => Object.fromEntries(trs.map((tr) => [...tr.children].map((td) => td.textContent))));
		await page.screenshot({ path: path.join(shots, 'destinations-consented.png'), fullPage: true });
		await page.click('#modal_overlay button:has-text("Close")');

		// Settings: the UCI sections of SPEC §3.
		await open('settings');
		seen.settings = await page.$$eval('fieldset[data-sectiontype]', (fs) => fs.map((f) => ({
			type: f.dataset.sectiontype, options: [...f.querySelectorAll('[data-option]')].map((o) => o.dataset.option),
		})));
		seen.settings_config = await page.getAttribute('.cbi-map', 'data-config');
		await page.screenshot({ path: path.join(shots, 'settings.png'), fullPage: true });

		seen.page_errors = errors;
		seen.notifications = await page.textContent('#notifications');
		seen.calls = calls;
	} finally {
		await browser.close();
		server.close();
		fs.rmSync(userDir, { recursive: true, force: true });
	}
	process.stdout.write(JSON.stringify(seen) + '\n');
}

main().catch((e) => {
	process.stderr.write(`run.js: ${e.stack || e}\ncalls: ${JSON.stringify(calls)}\n`);
	server.close();
	process.exit(1);
});
