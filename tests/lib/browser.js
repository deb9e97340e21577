#!/usr/bin/env node
// Loads a page in headless Chromium at a given width and reports its layout
// as JSON; optionally saves a screenshot of the whole page. No dependencies:
// Chromium is driven over the DevTools protocol on --remote-debugging-pipe
// (JSON messages ending in NUL on fds 3 and 4). DevTools' own evaluation is
// exempt from the page's Content-Security-Policy, so a page that forbids
// scripts can still be measured.
//
//   node tests/lib/browser.js URL WIDTH [PNG]
//
// Below 600 px the browser emulates a phone (the page's viewport meta
// applies, as on a real one). Prints {innerWidth, scrollWidth, height,
// wide: elements past either edge of WIDTH, refresh: the meta refresh,
// viewport, title, console: messages, errors and CSP reports}. CHROMIUM overrides
// /usr/bin/chromium. Exits 2 on a browser or protocol failure.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const [url, widthArg, png] = process.argv.slice(2);
const width = Number(widthArg);
if (!url || !(width >= 200 && width <= 4000)) {
	console.error('usage: browser.js URL WIDTH [PNG]');
	process.exit(2);
}
const mobile = width < 600;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ispmon-browser-'));
const chrome = spawn(process.env.CHROMIUM || '/usr/bin/chromium', [
	'--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
	'--disable-background-networking', '--disable-component-update', '--disable-sync',
	'--disable-default-apps', '--disable-extensions', '--hide-scrollbars',
	'--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
let stderr = '';
chrome.on('error', (e) => { stderr += e.message; });
chrome.stdio[3].on('error', () => {});
chrome.stderr.on('data', (d) => { stderr = (stderr + d).slice(-2000); });

let nextId = 1, buf = '';
const pending = new Map(), waiters = [], consoleMsgs = [];
function send(method, params = {}, sessionId) {
	const id = nextId++;
	chrome.stdio[3].write(JSON.stringify({ id, method, params, sessionId }) + '\0');
	return new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
}
function on(method) { return new Promise((resolve) => waiters.push({ method, resolve })); }
chrome.stdio[4].on('data', (d) => {
	buf += d;
	let i;
	while ((i = buf.indexOf('\0')) >= 0) {
		const m = JSON.parse(buf.slice(0, i));
		buf = buf.slice(i + 1);
		if (m.id && pending.has(m.id)) {
			const p = pending.get(m.id);
			pending.delete(m.id);
			if (m.error) p.reject(new Error(`${p.method}: ${m.error.message}`));
			else p.resolve(m.result);
			continue;
		}
		const pr = m.params || {};
		if (m.method === 'Runtime.consoleAPICalled')
			consoleMsgs.push(`console.${pr.type}: ${(pr.args || []).map((a) => a.value ?? a.description).join(' ')}`);
		else if (m.method === 'Runtime.exceptionThrown')
			consoleMsgs.push(`exception: ${pr.exceptionDetails.exception?.description ?? pr.exceptionDetails.text}`);
		else if (m.method === 'Log.entryAdded')
			consoleMsgs.push(`${pr.entry.source} ${pr.entry.level}: ${pr.entry.text}`);
		for (let k = 0; k < waiters.length; k++)
			if (waiters[k].method === m.method) { waiters.splice(k, 1)[0].resolve(pr); break; }
	}
});

// Runs in the page: how wide it lays out (a phone widens its layout to
// content too wide for it), what sticks out of the screen's width, its
// meta tags.
const measure = `(() => {
	const W = ${width}, de = document.documentElement, wide = [];
	for (const e of document.querySelectorAll('body *')) {
		const r = e.getBoundingClientRect();
		if (r.width > 0 && (r.right > W + 0.5 || r.left < -0.5))
			wide.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
				(typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\\s+/).join('.') : '') +
				'[' + Math.round(r.left) + '..' + Math.round(r.right) + ']');
	}
	const meta = (n) => { const m = document.querySelector('meta[' + n + ']'); return m ? m.content : null; };
	return { innerWidth: window.innerWidth, clientWidth: de.clientWidth, scrollWidth: de.scrollWidth,
		height: Math.ceil(Math.max(de.scrollHeight, document.body ? document.body.scrollHeight : 0)),
		wide, refresh: meta('http-equiv="refresh" i'), viewport: meta('name="viewport"'), title: document.title };
})()`;

function timeout(ms, what) {
	return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref());
}

async function main() {
	const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
	const { sessionId: s } = await send('Target.attachToTarget', { targetId, flatten: true });
	await Promise.all(['Page.enable', 'Runtime.enable', 'Log.enable'].map((m) => send(m, {}, s)));
	const metrics = (h) => send('Emulation.setDeviceMetricsOverride',
		{ width, height: h, deviceScaleFactor: 1, mobile }, s);
	await metrics(mobile ? 844 : 900);
	const loaded = on('Page.loadEventFired');
	const nav = await send('Page.navigate', { url }, s);
	if (nav.errorText) throw new Error(`load ${url}: ${nav.errorText}`);
	await Promise.race([loaded, timeout(20000, 'page load')]);
	const ev = await send('Runtime.evaluate', { expression: measure, returnByValue: true }, s);
	if (ev.exceptionDetails) throw new Error(`measure: ${ev.exceptionDetails.text}`);
	const out = ev.result.value;
	if (png) {
		// The whole page: a viewport as tall as the page, then one shot.
		await metrics(Math.min(out.height, 16000));
		const shot = await send('Page.captureScreenshot', { format: 'png' }, s);
		fs.writeFileSync(png, Buffer.from(shot.data, 'base64'));
		out.screenshot = { file: png, width, height: Math.min(out.height, 16000) };
	}
	out.console = consoleMsgs;
	return out;
}

let code = 0;
Promise.race([main(), timeout(45000, 'browser')])
	.then((out) => process.stdout.write(JSON.stringify(out) + '\n'))
	.catch((e) => {
		console.error(`browser.js: ${e.message}${stderr ? `\nchromium: ${stderr.trim().split('\n').slice(-3).join('\n')}` : ''}`);
		code = 2;
	})
	.finally(() => {
		const done = () => {
			fs.rmSync(profile, { recursive: true, force: true });
			process.exit(code);
		};
		if (chrome.exitCode !== null || chrome.signalCode !== null) return done();
		chrome.on('exit', done);
		setTimeout(() => chrome.kill('SIGKILL'), 3000).unref();
		send('Browser.close').catch(() => {});
	});
