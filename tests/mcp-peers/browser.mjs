// The human's browser in the interactive tests: a redirect follower with a
// cookie jar that answers Warden's consent page (the IdP's login and
// consent are answered by the test's IdP for the human it names). Imported
// by interactive.test.mjs; run as `node browser.mjs URL`, it is the browser
// `warden connect --sign-in --browser` opens, which ends on the bridge's
// loopback callback page. The conformance suite's interactive client
// scenarios use it too (its authorization server redirects at once).
import { appendFileSync } from 'node:fs';
/**
 * The human's browser: follows redirects from `url` with a cookie jar per
 * host until it reaches `stopAt` (the host's redirect URI), whose URL it
 * returns, or, without `stopAt`, a page that is no redirect. It answers
 * Warden's consent page with `decision`; `rewrite` may alter a URL before
 * it is fetched (an attacker's edit).
 */
export async function browse(url, rewrite = (u) => u, stopAt = null, decision = 'allow') {
  const jar = new Map();
  let form = null;
  for (let i = 0; i < 20; i += 1) {
    if (!form && stopAt && url.startsWith(stopAt)) return new URL(url);
    if (!form) url = rewrite(url);
    const { host, pathname } = new URL(url);
    // Cookies by host, name and Path, sent only under their path (as a
    // browser does), so a cookie set for the wrong path breaks the flow here too.
    const cookies = jar.get(host) ?? new Map();
    const sent = [...cookies.values()].filter((c) => pathname.startsWith(c.path)).map((c) => `${c.name}=${c.value}`);
    const headers = sent.length ? { cookie: sent.join('; ') } : {};
    const r = await fetch(url, { redirect: 'manual', headers, ...(form ? { method: 'POST', body: form } : {}) });
    form = null;
    for (const c of r.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(';').map((x) => x.trim());
      const at = pair.indexOf('=');
      const name = pair.slice(0, at);
      const path = attrs.find((a) => /^path=/i.test(a))?.slice(5) ?? '/';
      if (attrs.some((a) => /^max-age=0$/i.test(a))) cookies.delete(`${name}|${path}`);
      else cookies.set(`${name}|${path}`, { name, value: pair.slice(at + 1), path });
    }
    jar.set(host, cookies);
    const location = r.headers.get('location');
    if (!location) {
      const body = await r.text();
      const consent = r.status === 200 && body.match(/<form method=post action="([^"]+)"><input type=hidden name=consent value="([^"]+)">/);
      if (!consent) return { status: r.status, body };
      // The human reads the consent page and answers it.
      url = consent[1];
      form = new URLSearchParams({ consent: consent[2], decision });
      continue;
    }
    url = new URL(location, url).toString();
  }
  throw new Error(`the sign-in did not end: at ${url}`);
}


if (import.meta.url === `file://${process.argv[1]}`) {
  // Each sign-in leaves a line where the test asks, so it can count them.
  if (process.env.BROWSER_LOG) appendFileSync(process.env.BROWSER_LOG, `${process.argv.at(-1)}\n`);
  const end = await browse(process.argv.at(-1));
  console.error(`browser: ended at ${end instanceof URL ? end : `a page (${end.status})`}`);
  process.exit(end.status === 200 ? 0 : 1);
}
