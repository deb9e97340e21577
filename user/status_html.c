/*
 * The status page as HTML: inline CSS and inline SVG charts only, nothing
 * fetched from anywhere (a Content-Security-Policy says so to the browser),
 * no JavaScript; a refresh every few seconds. Every string that came from
 * outside (interface and device names, ping targets, server labels) is
 * escaped. Figures carry their /metrics sample and exact value in
 * data-metric / data-value attributes, so scripts and the tests can check
 * the page against /metrics.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtt.h"
#include "status.h"

#define CHART_W 320
#define MAX_PTS 400 /* >= the buckets of a tier */
#define OUTAGES_LISTED 5

static const char *const dir_names[ISPMON_DIR_MAX] = {"download", "upload"};
static const char *const dir_arrows[ISPMON_DIR_MAX] = {"\xe2\x86\x93", "\xe2\x86\x91"}; /* ↓ ↑ */

static const char css[] =
	":root{color-scheme:light dark;--bg:#f1f3f6;--card:#fff;--fg:#111827;--mut:#5b6472;--gl:#e3e6ea;"
	"--down:#2563eb;--up:#ea580c;--wan:#0e7490;--lan:#c026d3;--bloat:#7c3aed;--loss:#dc2626;"
	"--ok:#15803d;--okbg:#dcfce7;--warn:#b45309;--warnbg:#fef3c7;--bad:#b91c1c;--badbg:#fee2e2;"
	"--unk:#475569;--unkbg:#e2e8f0}\n"
	"@media(prefers-color-scheme:dark){:root{--bg:#0f172a;--card:#1e293b;--fg:#f1f5f9;--mut:#9aa6b8;"
	"--gl:#334155;--down:#60a5fa;--up:#fb923c;--wan:#22d3ee;--lan:#e879f9;--bloat:#a78bfa;"
	"--loss:#f87171;--ok:#22c55e;--okbg:#14361f;--warn:#f59e0b;--warnbg:#3f2a0a;--bad:#ef4444;"
	"--badbg:#3f1212;--unk:#94a3b8;--unkbg:#273449}}\n"
	"*{box-sizing:border-box}\n"
	"body{margin:0;background:var(--bg);color:var(--fg);"
	"font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,\"DejaVu Sans\",sans-serif}\n"
	".wrap{max-width:76rem;margin:0 auto;padding:0 .75rem}\n"
	".top{display:flex;justify-content:space-between;align-items:baseline;gap:.25rem 1rem;"
	"flex-wrap:wrap;padding:.8rem .25rem .5rem}\n"
	".brand{font-weight:700;font-size:1.1rem}.mut{color:var(--mut);font-size:.85rem}\n"
	".verdict{display:flex;gap:1rem;align-items:center;padding:1rem 1.25rem;border-radius:14px;"
	"margin:0 0 1rem;border-left:10px solid}\n"
	".v-ok{background:var(--okbg);border-color:var(--ok)}"
	".v-degraded{background:var(--warnbg);border-color:var(--warn)}"
	".v-down{background:var(--badbg);border-color:var(--bad)}"
	".v-unknown{background:var(--unkbg);border-color:var(--unk)}\n"
	".badge{flex:none;width:3.4rem;height:3.4rem;border-radius:50%;display:flex;align-items:center;"
	"justify-content:center;font-size:1.9rem;font-weight:700;color:#fff}\n"
	".v-ok .badge{background:var(--ok)}.v-degraded .badge{background:var(--warn)}"
	".v-down .badge{background:var(--bad)}.v-unknown .badge{background:var(--unk)}\n"
	".verdict h1{margin:0;font-size:2rem;line-height:1.15}\n"
	".why{margin:.35rem 0 0;padding-left:1.1rem}.sum{margin:.4rem 0 0;font-weight:600}\n"
	".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,22rem),1fr));gap:.9rem}\n"
	".card{background:var(--card);border-radius:14px;padding:.85rem 1rem 1rem;"
	"box-shadow:0 1px 3px rgba(0,0,0,.08)}\n"
	".card h2{margin:0 0 .45rem;font-size:.78rem;letter-spacing:.07em;text-transform:uppercase;"
	"color:var(--mut)}\n"
	".stats{display:flex;flex-wrap:wrap;gap:.2rem 1.6rem}.lbl{display:block;font-size:.8rem;color:var(--mut)}\n"
	".big{font-size:1.55rem;font-weight:650;white-space:nowrap}.none{color:var(--mut);font-weight:500}\n"
	".c-download{color:var(--down)}.c-upload{color:var(--up)}.c-wan{color:var(--wan)}"
	".c-lan{color:var(--lan)}.c-bloat{color:var(--bloat)}\n"
	".note{margin:.45rem 0 0;font-size:.85rem;color:var(--mut)}\n"
	"svg.chart{display:block;width:100%;height:auto;margin-top:.55rem}\n"
	".chart .gl{stroke:var(--gl)}.chart text{fill:var(--mut);font-size:10px;paint-order:stroke;"
	"stroke:var(--card);stroke-width:3px;stroke-linejoin:round}.chart .empty{font-size:12px}\n"
	".ln{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}.ref{stroke-width:1.2;stroke-dasharray:5 4}\n"
	".k-download{stroke:var(--down);fill:var(--down)}.k-upload{stroke:var(--up);fill:var(--up)}"
	".k-wan{stroke:var(--wan);fill:var(--wan)}.k-lan{stroke:var(--lan);fill:var(--lan)}"
	".k-bloat{stroke:var(--bloat);fill:var(--bloat)}.k-loss{fill:var(--loss)}\n"
	".ln.k-download,.ln.k-upload,.ln.k-wan,.ln.k-lan,.ln.k-bloat,.ref{fill:none}"
	".ar{stroke:none;opacity:.13}.bd{stroke:none;opacity:.2}.dt{stroke:none}\n"
	".st-up{fill:var(--ok);opacity:.6}.st-down{fill:var(--bad)}.st-none{fill:var(--gl)}"
	".bar0{fill:var(--ok);opacity:.55}\n"
	".grade{display:inline-block;min-width:2.3em;padding:0 .3em;border-radius:9px;text-align:center;"
	"color:#fff;font-size:1.6rem;font-weight:700}\n"
	".g-Ap,.g-A{background:var(--ok)}.g-B{background:#4d7c0f}.g-C{background:var(--warn)}"
	".g-D,.g-F{background:var(--bad)}.g-none{background:var(--unk)}\n"
	"ul.list{list-style:none;margin:.5rem 0 0;padding:0}\n"
	"ul.list li{display:flex;justify-content:space-between;flex-wrap:wrap;gap:0 .75rem;"
	"padding:.3rem 0;border-top:1px solid var(--gl);font-size:.92rem}\n"
	"ul.list li.dev{display:block}.row{display:flex;justify-content:space-between;flex-wrap:wrap;gap:0 .75rem}\n"
	".ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}"
	".dn{font-weight:600;overflow-wrap:anywhere}\n"
	"footer{color:var(--mut);font-size:.85rem;padding:1.1rem .25rem 1.6rem;text-align:center}"
	"a{color:var(--down)}\n"
	"@media(max-width:30rem){.verdict{padding:.8rem .9rem;gap:.75rem}.verdict h1{font-size:1.5rem}"
	".big{font-size:1.3rem}.badge{width:2.6rem;height:2.6rem;font-size:1.4rem}}\n";

/* ---- escaping and figures ---- */

/* Text and attribute values alike. Everything shown is ASCII by
 * construction (validated names, addresses); anything else is replaced. */
static void esc(struct mbuf *b, const char *s)
{
	const char *run = s;

	for (;; s++) {
		const char *rep = NULL;
		unsigned char c = (unsigned char)*s;

		if (c == '&')
			rep = "&amp;";
		else if (c == '<')
			rep = "&lt;";
		else if (c == '>')
			rep = "&gt;";
		else if (c == '"')
			rep = "&quot;";
		else if (c == '\'')
			rep = "&#39;";
		else if (c && (c < 0x20 || c >= 0x7f))
			rep = "?";
		if (!rep && c)
			continue;
		if (s > run)
			mbuf_printf(b, "%.*s", (int)(s - run), run);
		if (!c)
			return;
		mbuf_printf(b, "%s", rep);
		run = s + 1;
	}
}

/*
 * A figure: its text, and for machines its /metrics sample (name{labels},
 * as /metrics writes it) or its own name, with the exact value.
 */
static void fig(struct mbuf *b, const char *cls, const char *metric, const char *figure,
		double v, const char *text)
{
	mbuf_printf(b, "<span class=\"%s\"", cls);
	if (metric) {
		mbuf_printf(b, " data-metric=\"");
		esc(b, metric);
		mbuf_printf(b, "\"");
	}
	if (figure)
		mbuf_printf(b, " data-figure=\"%s\"", figure);
	if (isfinite(v))
		mbuf_printf(b, " data-value=\"%.17g\"", v);
	mbuf_printf(b, ">");
	esc(b, text);
	mbuf_printf(b, "</span>");
}

/* A labelled figure in a row of them. */
static void stat(struct mbuf *b, const char *label, const char *cls, const char *metric,
		 double v, const char *text)
{
	mbuf_printf(b, "<div class=\"stat\"><span class=\"lbl\">%s</span>", label);
	fig(b, cls, metric, NULL, v, text);
	mbuf_printf(b, "</div>");
}

static void card_open(struct mbuf *b, const char *id, const char *title)
{
	mbuf_printf(b, "<section class=\"card\" id=\"%s\" aria-labelledby=\"h-%s\">"
		       "<h2 id=\"h-%s\">%s</h2>\n", id, id, id, title);
}

static void card_close(struct mbuf *b) { mbuf_printf(b, "</section>\n"); }

/* The body of a card whose figures are turned off, and its end. */
static void card_off(struct mbuf *b, const char *why)
{
	mbuf_printf(b, "<p class=\"big none\">Off</p><p class=\"note\">%s</p></section>\n", why);
}

/* ---- charts ---- */

enum chart_kind {
	CK_LINE,  /* bucket means joined, gaps left open; optional area, min-max band */
	CK_DOTS,  /* one dot per bucket: sparse results (speed tests) */
	CK_RATIO, /* bars of series / den per bucket (loss) */
	CK_STATE, /* a strip: up (mean 1) or down (any 0) per bucket */
};

struct chart_line {
	unsigned series, den;
	const char *kind_cls; /* colour: download, upload, wan, lan, bloat, loss */
	const char *name;
	enum chart_kind kind;
	bool area, band;
	double ref; /* a dashed reference (the plan), NaN: none */
};

struct chart {
	const char *id, *title;
	void (*axis)(char *buf, size_t len, double v); /* a stored value, compactly */
	double min_top;
	unsigned n;
	struct chart_line l[2];
	bool small; /* a sparkline: no axis labels */
};

static void axis_rate(char *buf, size_t len, double Bps)
{
	double bits = Bps * 8;

	if (bits >= 1e9)
		snprintf(buf, len, "%.3g Gbit/s", bits / 1e9);
	else if (bits >= 1e6)
		snprintf(buf, len, "%.3g Mbit/s", bits / 1e6);
	else
		snprintf(buf, len, "%.3g kbit/s", bits / 1e3);
}

static void axis_ms(char *buf, size_t len, double s) { snprintf(buf, len, "%.3g ms", s * 1e3); }

static void axis_pct(char *buf, size_t len, double r) { snprintf(buf, len, "%.3g%%", r * 100); }

/* 1, 2, 2.5, 5 x 10^k at or above v. */
static double nice_top(double v)
{
	static const double m[] = {1, 2, 2.5, 5, 10};
	double e;

	if (!(v > 0) || !isfinite(v))
		return 1;
	e = pow(10, floor(log10(v)));
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (m[i] * e >= v * 0.9999)
			return m[i] * e;
	return 10 * e;
}

struct geom {
	double from, span, step, top, y_top, y_base;
};

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static double gx(const struct geom *g, double t)
{
	return clampd((t - g->from) / g->span * CHART_W, 0, CHART_W);
}

static double gy(const struct geom *g, double v)
{
	double f = v / g->top;

	if (f > 1)
		f = 1;
	if (f < 0)
		f = 0;
	return g->y_base - f * (g->y_base - g->y_top);
}

/* Where a bucket starting at t is drawn: the middle of its part inside the
 * chart's span, so the newest one, still filling, sits in the middle of
 * what it has so far, never past "now". */
static double bx(const struct geom *g, double t)
{
	double a = fmax(t, g->from), z = fmin(t + g->step, g->from + g->span);

	return gx(g, a < z ? (a + z) / 2 : t + g->step / 2);
}

/* A dot of radius r, wholly inside the chart's width. */
static void dot(struct mbuf *b, const struct geom *g, const char *kind_cls, double t, double v,
		double r)
{
	mbuf_printf(b, "<circle class=\"dt k-%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\"/>", kind_cls,
		    clampd(bx(g, t), r, CHART_W - r), gy(g, v), r);
}

static double value_of(const struct chart_line *l, const struct history_point *p,
		       const struct history_point *den, unsigned n_den)
{
	if (l->kind != CK_RATIO)
		return p->mean;
	for (unsigned i = 0; i < n_den; i++)
		if (den[i].t == p->t)
			return den[i].sum > 0 ? p->sum / den[i].sum : NAN;
	return NAN;
}

/* A joined line per run of buckets without gaps, with its area or band. */
static void draw_line(struct mbuf *b, const struct geom *g, const struct chart_line *l,
		      const struct history_point *p, unsigned n)
{
	unsigned i = 0;

	while (i < n) {
		unsigned j = i + 1;

		while (j < n && p[j].t - p[j - 1].t < 1.5 * g->step)
			j++;
		/* Run [i, j). */
		if (l->band && j - i > 1) {
			mbuf_printf(b, "<path class=\"bd k-%s\" d=\"", l->kind_cls);
			for (unsigned k = i; k < j; k++)
				mbuf_printf(b, "%c%.1f %.1f", k == i ? 'M' : 'L',
					    bx(g, p[k].t), gy(g, p[k].max));
			for (unsigned k = j; k-- > i;)
				mbuf_printf(b, "L%.1f %.1f", bx(g, p[k].t), gy(g, p[k].min));
			mbuf_printf(b, "Z\"/>");
		}
		if (l->area && j - i > 1) {
			mbuf_printf(b, "<path class=\"ar k-%s\" d=\"M%.1f %.1f", l->kind_cls,
				    bx(g, p[i].t), g->y_base);
			for (unsigned k = i; k < j; k++)
				mbuf_printf(b, "L%.1f %.1f", bx(g, p[k].t), gy(g, p[k].mean));
			mbuf_printf(b, "L%.1f %.1fZ\"/>", bx(g, p[j - 1].t), g->y_base);
		}
		if (j - i == 1) {
			dot(b, g, l->kind_cls, p[i].t, p[i].mean, 1.8);
		} else {
			mbuf_printf(b, "<path class=\"ln k-%s\" d=\"", l->kind_cls);
			for (unsigned k = i; k < j; k++)
				mbuf_printf(b, "%c%.1f %.1f", k == i ? 'M' : 'L',
					    bx(g, p[k].t), gy(g, p[k].mean));
			mbuf_printf(b, "\"/>");
		}
		i = j;
	}
}

static void draw(struct mbuf *b, const struct geom *g, const struct chart_line *l,
		 const struct history_point *p, unsigned n, const struct history_point *den,
		 unsigned n_den)
{
	switch (l->kind) {
	case CK_LINE:
		draw_line(b, g, l, p, n);
		break;
	case CK_DOTS:
		for (unsigned i = 0; i < n; i++)
			dot(b, g, l->kind_cls, p[i].t, p[i].mean, 3.2);
		break;
	case CK_RATIO:
		/* Every bucket with pings: a red bar for loss, a green tick for none. */
		for (unsigned i = 0; i < n_den; i++) {
			double x0 = gx(g, den[i].t), x1 = gx(g, den[i].t + g->step), r = 0, y;

			for (unsigned k = 0; k < n; k++)
				if (p[k].t == den[i].t && den[i].sum > 0)
					r = p[k].sum / den[i].sum;
			y = gy(g, r);
			if (x1 - x0 > 2) {
				x0 += 0.5;
				x1 -= 0.5;
			}
			if (r > 0)
				mbuf_printf(b, "<rect class=\"k-loss\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>",
					    x0, y, x1 - x0, g->y_base - y);
			else
				mbuf_printf(b, "<rect class=\"bar0\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"2\"/>",
					    x0, g->y_base - 2, x1 - x0);
		}
		break;
	case CK_STATE:
		mbuf_printf(b, "<rect class=\"st-none\" x=\"0\" y=\"%.1f\" width=\"%d\" height=\"%.1f\"/>",
			    g->y_top, CHART_W, g->y_base - g->y_top);
		for (unsigned i = 0; i < n; i++) {
			double x0 = gx(g, p[i].t), x1 = gx(g, p[i].t + g->step);

			mbuf_printf(b, "<rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\"/>",
				    p[i].min < 1 ? "st-down" : "st-up", x0, g->y_top,
				    x1 - x0 < 1 ? 1 : x1 - x0, g->y_base - g->y_top);
		}
		break;
	}
}

/*
 * One chart over the status_chart_span: gridlines and axis labels, the
 * lines, a title and a description for screen readers, and for scripts
 * the number of points drawn (data-points) and each line's own
 * (data-lines="download:3 upload:2"). pts: 3 x MAX_PTS scratch.
 */
static void chart(struct mbuf *b, const struct status_snapshot *s, const struct history *h,
		  const struct chart *c, struct history_point *pts)
{
	double span = status_chart_span(s), now = s->t_mono, height = c->small ? 36 : 100;
	unsigned tier = history_tier_for(h, span), n[2] = {0}, n_den = 0, total = 0;
	struct history_point *den = pts + 2 * MAX_PTS;
	struct geom g = {.from = now - span, .span = span, .step = history_step(h, tier)};
	double peak = 0;
	char txt[64], ago[48];

	g.y_top = c->small ? 2 : 12;
	g.y_base = c->small ? height - 2 : height - 16;
	for (unsigned i = 0; i < c->n; i++) {
		const struct chart_line *l = &c->l[i];

		n[i] = history_read(h, l->series, tier, g.from, now, pts + i * MAX_PTS, MAX_PTS);
		if (l->kind == CK_RATIO)
			n_den = history_read(h, l->den, tier, g.from, now, den, MAX_PTS);
		total += l->kind == CK_RATIO ? n_den : n[i];
		for (unsigned k = 0; k < n[i]; k++) {
			const struct history_point *p = pts + i * MAX_PTS + k;
			double v = l->band ? p->max : value_of(l, p, den, n_den);

			if (isfinite(v) && v > peak)
				peak = v;
		}
		if (isfinite(l->ref) && l->ref > peak)
			peak = l->ref;
	}
	g.top = nice_top(fmax(peak * 1.05, c->min_top));
	if (c->l[0].kind == CK_RATIO && g.top > 1)
		g.top = 1; /* a share: 100% at most */
	status_fmt_duration(ago, sizeof(ago), span);

	mbuf_printf(b, "<svg class=\"chart\" viewBox=\"0 0 %d %.0f\" role=\"img\" "
		       "aria-labelledby=\"%s-t %s-d\" data-chart=\"%s\" data-points=\"%u\" data-lines=\"",
		    CHART_W, height, c->id, c->id, c->id, total);
	for (unsigned i = 0; i < c->n; i++)
		mbuf_printf(b, "%s%s:%u", i ? " " : "", c->l[i].kind_cls,
			    c->l[i].kind == CK_RATIO ? n_den : n[i]);
	mbuf_printf(b, "\">");
	mbuf_printf(b, "<title id=\"%s-t\">", c->id);
	esc(b, c->title);
	mbuf_printf(b, ", last %s</title><desc id=\"%s-d\">", ago, c->id);
	if (!total)
		mbuf_printf(b, "No data yet.");
	for (unsigned i = 0; i < c->n && total; i++) {
		const struct chart_line *l = &c->l[i];
		const struct history_point *p = pts + i * MAX_PTS;

		double hi = 0;

		if (l->kind == CK_STATE || !n[i])
			continue;
		for (unsigned k = 0; k < n[i]; k++) {
			double v = l->band ? p[k].max : value_of(l, &p[k], den, n_den);

			if (isfinite(v) && v > hi)
				hi = v;
		}
		c->axis(txt, sizeof(txt), value_of(l, &p[n[i] - 1], den, n_den));
		mbuf_printf(b, "%s: latest %s, ", l->name, txt);
		c->axis(txt, sizeof(txt), hi);
		mbuf_printf(b, "highest %s. ", txt);
	}
	mbuf_printf(b, "</desc>");
	if (!c->small && c->l[0].kind != CK_STATE)
		for (int k = 0; k < 2; k++) {
			double y = gy(&g, g.top / (k + 1));

			mbuf_printf(b, "<line class=\"gl\" x1=\"0\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>",
				    CHART_W, y, y);
		}
	if (c->l[0].kind != CK_STATE)
		mbuf_printf(b, "<line class=\"gl\" x1=\"0\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>",
			    CHART_W, g.y_base, g.y_base);
	for (unsigned i = 0; i < c->n; i++) {
		const struct chart_line *l = &c->l[i];

		if (isfinite(l->ref) && l->ref > 0) {
			double y = gy(&g, l->ref);

			mbuf_printf(b, "<line class=\"ref k-%s\" x1=\"0\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>"
				       "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">plan</text>",
				    l->kind_cls, CHART_W, y, y, CHART_W - 2, y - 2);
		}
		draw(b, &g, l, pts + i * MAX_PTS, n[i], den, n_den);
	}
	if (!total)
		mbuf_printf(b, "<text class=\"empty\" x=\"%d\" y=\"%.1f\" text-anchor=\"middle\">"
			       "No data yet</text>", CHART_W / 2, (g.y_top + g.y_base) / 2 + 4);
	/* Labels last: their halo (CSS) keeps lines from crossing them. */
	if (!c->small && c->l[0].kind != CK_STATE)
		for (int k = 0; k < 2; k++) {
			double v = g.top / (k + 1);

			c->axis(txt, sizeof(txt), v);
			mbuf_printf(b, "<text x=\"2\" y=\"%.1f\">%s</text>", gy(&g, v) - 2, txt);
		}
	if (!c->small) {
		char half[48];

		status_fmt_duration(half, sizeof(half), span / 2);
		mbuf_printf(b, "<text x=\"0\" y=\"%.0f\">%s ago</text>"
			       "<text x=\"%d\" y=\"%.0f\" text-anchor=\"middle\">%s ago</text>"
			       "<text x=\"%d\" y=\"%.0f\" text-anchor=\"end\">now</text>",
			    height - 3, ago, CHART_W / 2, height - 3, half, CHART_W, height - 3);
	}
	mbuf_printf(b, "</svg>\n");
}

/* ---- the parts of the page ---- */

static void head(struct mbuf *b, const struct status_snapshot *s)
{
	long refresh = lround(s->interval_s);
	char clock[48];

	if (refresh < 10)
		refresh = 10;
	if (refresh > 300)
		refresh = 300;
	mbuf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
		       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		       "<meta http-equiv=\"refresh\" content=\"%ld\">\n"
		       "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
		       "style-src 'unsafe-inline'; img-src data:\">\n"
		       "<link rel=\"icon\" href=\"data:,\">\n<title>%s - ispmon</title>\n<style>\n%s</style>\n"
		       "</head>\n<body data-collections=\"%llu\">\n<div class=\"wrap\">\n",
		    refresh, s->headline, css, (unsigned long long)s->collections);
	status_fmt_clock(clock, sizeof(clock), s->t_real, s->t_real);
	mbuf_printf(b, "<header class=\"top\"><span class=\"brand\">ispmon</span>"
		       "<span class=\"mut\">Updated ");
	fig(b, "", NULL, "time", s->t_real, clock);
	mbuf_printf(b, ", refreshes every %ld s</span></header>\n", refresh);
}

static void verdict(struct mbuf *b, const struct status_snapshot *s)
{
	static const char *const badges[4] = {"?", "\xe2\x9c\x93", "!", "\xe2\x9c\x95"}; /* ✓ ✕ */
	const char *name = status_verdict_names[s->verdict];

	mbuf_printf(b, "<section class=\"verdict v-%s\" id=\"verdict\" data-state=\"%s\" "
		       "aria-live=\"polite\"><div class=\"badge\" aria-hidden=\"true\">%s</div><div>"
		       "<h1>%s</h1><ul class=\"why\">", name, name, badges[s->verdict], s->headline);
	for (unsigned i = 0; i < s->n_reasons; i++) {
		mbuf_printf(b, "<li>");
		esc(b, s->reasons[i]);
		mbuf_printf(b, "</li>");
	}
	mbuf_printf(b, "</ul><p class=\"sum\" data-figure=\"summary\">");
	esc(b, s->summary);
	mbuf_printf(b, "</p></div></section>\n");
}

static void card_throughput(struct mbuf *b, const struct status_snapshot *s,
			    const struct history *h, struct history_point *pts)
{
	const struct chart c = {
		.id = "c-throughput", .title = "Throughput", .axis = axis_rate, .min_top = 125000, .n = 2,
		.l = {{.series = SS_DOWN, .kind_cls = "download", .name = "Download", .area = true,
		       .band = true, .ref = NAN},
		      {.series = SS_UP, .kind_cls = "upload", .name = "Upload", .band = true, .ref = NAN}},
	};
	char key[128], txt[48], step[32];

	card_open(b, "throughput", "Throughput now");
	mbuf_printf(b, "<div class=\"stats\">");
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		char label[32];

		snprintf(label, sizeof(label), "%s %s", dir_arrows[d], d ? "Upload" : "Download");
		snprintf(key, sizeof(key), "ispmon_passive_throughput_bytes_per_second{direction=\"%s\"}",
			 dir_names[d]);
		status_fmt_rate(txt, sizeof(txt), s->rate[d]);
		stat(b, label, d ? "big c-upload" : "big c-download", s->have_rate ? key : NULL,
		     s->rate[d], txt);
	}
	mbuf_printf(b, "</div>");
	chart(b, s, h, &c, pts);
	status_fmt_duration(step, sizeof(step), history_step(h, history_tier_for(h, status_chart_span(s))));
	mbuf_printf(b, "<p class=\"note\">All traffic on the internet line, over the last %g s. "
		       "Line: the mean of each %s; shade: its lowest to highest second.</p>",
		    s->interval_s, step);
	card_close(b);
}

static void card_capacity(struct mbuf *b, const struct status_snapshot *s,
			  const struct history *h, struct history_point *pts)
{
	const struct chart c = {
		.id = "c-capacity", .title = "Capacity estimate", .axis = axis_rate, .min_top = 125000,
		.n = 2,
		.l = {{.series = SS_CAP_DOWN, .kind_cls = "download", .name = "Download",
		       .ref = s->plan[0] > 0 ? s->plan[0] : NAN},
		      {.series = SS_CAP_UP, .kind_cls = "upload", .name = "Upload",
		       .ref = s->plan[1] > 0 ? s->plan[1] : NAN}},
	};
	char key[128], txt[48], plan[48];
	bool any = false;

	card_open(b, "capacity", "Line capacity vs plan");
	mbuf_printf(b, "<div class=\"stats\">");
	for (int d = 0; d < ISPMON_DIR_MAX; d++) {
		char label[32];

		snprintf(label, sizeof(label), "%s %s", dir_arrows[d], d ? "Upload" : "Download");
		mbuf_printf(b, "<div class=\"stat\"><span class=\"lbl\">%s</span>", label);
		if (isfinite(s->capacity[d])) {
			snprintf(key, sizeof(key), "ispmon_passive_capacity_bytes_per_second{direction=\"%s\"}",
				 dir_names[d]);
			status_fmt_rate(txt, sizeof(txt), s->capacity[d]);
			fig(b, d ? "big c-upload" : "big c-download", key, NULL, s->capacity[d], txt);
			any = true;
		} else {
			fig(b, "big none", NULL, NULL, NAN, "not yet");
		}
		if (s->plan[d] > 0) {
			snprintf(key, sizeof(key), "ispmon_plan_bytes_per_second{direction=\"%s\"}", dir_names[d]);
			status_fmt_rate(plan, sizeof(plan), s->plan[d]);
			mbuf_printf(b, "<span class=\"lbl\">of ");
			fig(b, "", key, NULL, s->plan[d], plan);
			if (isfinite(s->capacity[d]))
				mbuf_printf(b, " plan (%.0f%%)", 100 * s->capacity[d] / s->plan[d]);
			else
				mbuf_printf(b, " plan");
			mbuf_printf(b, "</span>");
		}
		mbuf_printf(b, "</div>");
	}
	mbuf_printf(b, "</div>");
	chart(b, s, h, &c, pts);
	mbuf_printf(b, "<p class=\"note\">%s</p>",
		    any ? "Measured passively: the median goodput of the moments the household's own "
			  "traffic filled the line (the last 10 minutes of them)."
			: "Measured passively, once the household's own traffic fills the line for a few "
			  "seconds (a big download or upload); browsing and video never do.");
	card_close(b);
}

static void card_speedtest(struct mbuf *b, const struct status_snapshot *s,
			   const struct history *h, struct history_point *pts)
{
	const struct chart c = {
		.id = "c-speedtest", .title = "Speed tests", .axis = axis_rate, .min_top = 125000, .n = 2,
		.l = {{.series = SS_SPEED_DOWN, .kind_cls = "download", .name = "Download",
		       .kind = CK_DOTS, .ref = s->plan[0] > 0 ? s->plan[0] : NAN},
		      {.series = SS_SPEED_UP, .kind_cls = "upload", .name = "Upload", .kind = CK_DOTS,
		       .ref = s->plan[1] > 0 ? s->plan[1] : NAN}},
	};
	const struct speedtest_snap *sp = &s->speed;
	char key[192], txt[48];

	card_open(b, "speedtest", "Last speed test");
	if (!s->speed_on) {
		card_off(b, "Speed tests are turned off (--no-speedtest).");
		return;
	}
	mbuf_printf(b, "<div class=\"stats\">");
	for (int d = 0; d < SPEEDTEST_DIRS; d++) {
		char label[32];

		snprintf(label, sizeof(label), "%s %s", dir_arrows[d], d ? "Upload" : "Download");
		if (sp->have[d]) {
			snprintf(key, sizeof(key),
				 "ispmon_speedtest_bytes_per_second{direction=\"%s\",server=\"%s\"}",
				 dir_names[d], sp->server[d]);
			status_fmt_rate(txt, sizeof(txt), sp->bps[d]);
			stat(b, label, d ? "big c-upload" : "big c-download", key, sp->bps[d], txt);
		} else {
			stat(b, label, "big none", NULL, NAN, "none yet");
		}
	}
	mbuf_printf(b, "</div>");
	if (sp->last_success > 0) {
		char when[48], ago[48];

		status_fmt_clock(when, sizeof(when), sp->last_success, s->t_real);
		status_fmt_duration(ago, sizeof(ago), s->t_real - sp->last_success);
		mbuf_printf(b, "<p class=\"note\">");
		fig(b, "", "ispmon_speedtest_timestamp_seconds", NULL, sp->last_success, when);
		mbuf_printf(b, " (%s ago) against ", ago);
		esc(b, sp->server[sp->have[0] ? 0 : 1]);
		for (int d = 0; d < SPEEDTEST_DIRS; d++) {
			if (!isfinite(sp->loaded_rtt_s[d]))
				continue;
			snprintf(key, sizeof(key), "ispmon_speedtest_loaded_rtt_seconds{direction=\"%s\"}",
				 dir_names[d]);
			status_fmt_rtt(txt, sizeof(txt), sp->loaded_rtt_s[d]);
			mbuf_printf(b, "%s %s: ", d ? "," : "; round trips under load", dir_arrows[d]);
			fig(b, "", key, NULL, sp->loaded_rtt_s[d], txt);
		}
		mbuf_printf(b, ".%s</p>", sp->running ? " A test is running now." : "");
	} else {
		mbuf_printf(b, "<p class=\"note\">%s</p>", sp->running ? "The first test is running now."
								   : "No test has finished yet.");
	}
	chart(b, s, h, &c, pts);
	card_close(b);
}

static void card_rtt(struct mbuf *b, const struct status_snapshot *s, const struct history *h,
		     struct history_point *pts)
{
	static const char *const labels[ISPMON_LEG_MAX] = {"Internet (ISP's share)",
							   "Home network (Wi-Fi)"};
	const struct chart c = {
		.id = "c-rtt", .title = "Round-trip time", .axis = axis_ms, .min_top = 0.010, .n = 2,
		.l = {{.series = SS_RTT_WAN, .kind_cls = "wan", .name = "Internet", .ref = NAN},
		      {.series = SS_RTT_LAN, .kind_cls = "lan", .name = "Home network", .ref = NAN}},
	};
	char key[96], txt[48];

	card_open(b, "rtt", "Round trips: internet vs home");
	mbuf_printf(b, "<div class=\"stats\">");
	for (unsigned l = 0; l < ISPMON_LEG_MAX; l++) {
		snprintf(key, sizeof(key), "ispmon_passive_rtt_median_seconds{leg=\"%s\"}",
			 rtt_leg_names[l]);
		status_fmt_rtt(txt, sizeof(txt), s->rtt_s[l]);
		if (isfinite(s->rtt_s[l]))
			stat(b, labels[l], l ? "big c-lan" : "big c-wan", key, s->rtt_s[l], txt);
		else
			stat(b, labels[l], "big none", NULL, NAN, "no samples");
	}
	mbuf_printf(b, "</div>");
	chart(b, s, h, &c, pts);
	mbuf_printf(b, "<p class=\"note\">Medians of the household's own traffic over the last "
		       "%.0f s (", s->rtt_window_s);
	snprintf(txt, sizeof(txt), "%llu", (unsigned long long)s->rtt_samples[0]);
	fig(b, "", NULL, "rtt_samples_wan", (double)s->rtt_samples[0], txt);
	snprintf(txt, sizeof(txt), "%llu", (unsigned long long)s->rtt_samples[1]);
	mbuf_printf(b, " and ");
	fig(b, "", NULL, "rtt_samples_lan", (double)s->rtt_samples[1], txt);
	mbuf_printf(b, " samples)");
	if (isfinite(s->rtt_typical_s[0]) && isfinite(s->rtt_typical_s[1])) {
		char usual[48];

		status_fmt_rtt(txt, sizeof(txt), s->rtt_typical_s[0]);
		status_fmt_rtt(usual, sizeof(usual), s->rtt_typical_s[1]);
		mbuf_printf(b, "; usually %s and %s", txt, usual);
	}
	mbuf_printf(b, ". A device's round trip is the sum of both.</p>");
	card_close(b);
}

static void card_bloat(struct mbuf *b, const struct status_snapshot *s, const struct history *h,
		       struct history_point *pts)
{
	const struct chart c = {
		.id = "c-bloat", .title = "Latency under load", .axis = axis_ms, .min_top = 0.010, .n = 1,
		.l = {{.series = SS_BLOAT, .kind_cls = "bloat", .name = "Added under load", .area = true,
		       .ref = NAN}},
	};
	card_open(b, "bufferbloat", "Latency under load");
	if (s->grade[0]) {
		char cls[32], key[96], txt[48];

		/* "A+" is not a class name: g-Ap. */
		snprintf(cls, sizeof(cls), "grade g-%c%s", s->grade[0], s->grade[1] == '+' ? "p" : "");
		snprintf(key, sizeof(key), "ispmon_bufferbloat_grade_info{grade=\"%s\"}", s->grade);
		mbuf_printf(b, "<div class=\"stats\"><div class=\"stat\"><span class=\"lbl\">Grade</span>");
		fig(b, cls, key, NULL, 1, s->grade);
		status_fmt_rtt(txt, sizeof(txt), s->bloat_s);
		mbuf_printf(b, "</div>");
		stat(b, "Added when busy", "big c-bloat", "ispmon_bufferbloat_seconds", s->bloat_s, txt);
		mbuf_printf(b, "</div>");
	} else {
		mbuf_printf(b, "<div class=\"stats\"><div class=\"stat\"><span class=\"lbl\">Grade</span>"
			       "<span class=\"grade g-none\">?</span></div></div>");
	}
	chart(b, s, h, &c, pts);
	if (s->grade[0]) {
		char idle[48], loaded[48];

		status_fmt_rtt(idle, sizeof(idle), s->idle_rtt_s);
		status_fmt_rtt(loaded, sizeof(loaded), s->loaded_rtt_s);
		mbuf_printf(b, "<p class=\"note\">Round trips to the internet: ");
		fig(b, "", "ispmon_passive_rtt_idle_seconds", NULL, s->idle_rtt_s, idle);
		mbuf_printf(b, " when the line is idle, ");
		fig(b, "", "ispmon_passive_rtt_loaded_seconds", NULL, s->loaded_rtt_s, loaded);
		mbuf_printf(b, " when it is busy. A+ under 5 ms added, A 30, B 60, C 200, D 400, "
			       "else F.</p>");
	} else {
		mbuf_printf(b, "<p class=\"note\">Graded once the household has kept the line busy "
			       "for a few seconds (a big download or upload).</p>");
	}
	card_close(b);
}

static void card_ping(struct mbuf *b, const struct status_snapshot *s, const struct history *h,
		      struct history_point *pts)
{
	const struct chart c = {
		.id = "c-loss", .title = "Ping loss", .axis = axis_pct, .min_top = 0.05, .n = 1,
		.l = {{.series = SS_PING_LOST, .den = SS_PING_RESOLVED, .kind_cls = "loss",
		       .name = "Loss", .kind = CK_RATIO, .ref = NAN}},
	};
	char key[PING_HOST_MAX + 96], txt[64];
	double loss = s->resolved_5m ? (double)s->lost_5m / (double)s->resolved_5m : NAN;

	card_open(b, "ping", "Ping loss");
	if (!s->ping_on) {
		card_off(b, "Ping probes are turned off (--no-ping).");
		return;
	}
	if (isfinite(loss))
		snprintf(txt, sizeof(txt), "%.3g%%", loss * 100);
	else
		snprintf(txt, sizeof(txt), "-");
	mbuf_printf(b, "<div class=\"stats\"><div class=\"stat\"><span class=\"lbl\">Lost, last 5 min"
		       "</span>");
	fig(b, loss > 0.05 ? "big bad" : "big", NULL, "ping_loss_5m", loss, txt);
	mbuf_printf(b, "</div><div class=\"stat\"><span class=\"lbl\">Pings lost</span><span class=\"big\">");
	snprintf(txt, sizeof(txt), "%llu", (unsigned long long)s->lost_5m);
	fig(b, "", NULL, "ping_lost_5m", (double)s->lost_5m, txt);
	snprintf(txt, sizeof(txt), "%llu", (unsigned long long)s->resolved_5m);
	mbuf_printf(b, " of ");
	fig(b, "", NULL, "ping_resolved_5m", (double)s->resolved_5m, txt);
	mbuf_printf(b, "</span></div></div>");
	chart(b, s, h, &c, pts);
	mbuf_printf(b, "<ul class=\"list\">");
	for (unsigned i = 0; i < s->n_targets; i++) {
		const struct ping_target_snap *t = &s->targets[i];

		mbuf_printf(b, "<li><span class=\"dn\">");
		esc(b, t->host);
		mbuf_printf(b, "</span><span>");
		if (t->success >= 0) {
			snprintf(key, sizeof(key), "ispmon_probe_success{probe=\"ping\",target=\"%s\"}", t->host);
			fig(b, t->success ? "ok" : "bad", key, NULL, t->success,
			    t->success ? "answers" : "fails");
		} else {
			fig(b, "", NULL, NULL, NAN, "waiting");
		}
		if (isfinite(t->median_s)) {
			snprintf(key, sizeof(key), "ispmon_ping_rtt_median_seconds{target=\"%s\"}", t->host);
			status_fmt_rtt(txt, sizeof(txt), t->median_s);
			mbuf_printf(b, " &middot; ");
			fig(b, "", key, NULL, t->median_s, txt);
		}
		snprintf(key, sizeof(key), "ispmon_ping_received_total{target=\"%s\"}", t->host);
		snprintf(txt, sizeof(txt), "%llu", (unsigned long long)t->received);
		mbuf_printf(b, " &middot; ");
		fig(b, "", key, NULL, (double)t->received, txt);
		snprintf(key, sizeof(key), "ispmon_ping_sent_total{target=\"%s\"}", t->host);
		snprintf(txt, sizeof(txt), "%llu", (unsigned long long)t->sent);
		mbuf_printf(b, " of ");
		fig(b, "", key, NULL, (double)t->sent, txt);
		mbuf_printf(b, " answered</span></li>");
	}
	mbuf_printf(b, "</ul>");
	card_close(b);
}

static void card_outages(struct mbuf *b, const struct status_snapshot *s, const struct history *h,
			 struct history_point *pts)
{
	const struct chart c = {
		.id = "c-outages", .title = "Internet up (green) or down (red)", .axis = axis_pct,
		.n = 1, .l = {{.series = SS_INET_UP, .kind_cls = "ok", .name = "Up", .kind = CK_STATE,
			       .ref = NAN}},
	};
	const struct outages *o = &s->outages;
	double day_s = 0;
	unsigned day_n = outages_since(o, s->t_mono - STATUS_DAY_S, &day_s);
	char txt[64], when[48];

	card_open(b, "outages", "Outages");
	if (!o->known) {
		mbuf_printf(b, "<div class=\"stats\"><div class=\"stat\"><span class=\"lbl\">Now</span>");
		fig(b, "big none", NULL, "internet_up", NAN, "unknown");
		mbuf_printf(b, "</div></div><p class=\"note\">%s</p>",
			    s->ping_on ? "Waiting for the first ping results."
				       : "Not known: outages are seen by the ping probes, which are off "
					 "(--no-ping).");
		card_close(b);
		return;
	}
	mbuf_printf(b, "<div class=\"stats\"><div class=\"stat\"><span class=\"lbl\">Now</span>");
	if (o->state == INET_UNKNOWN)
		fig(b, "big none", NULL, "internet_up", NAN, "unknown");
	else
		fig(b, o->state == INET_UP ? "big ok" : "big bad", "ispmon_internet_up", NULL,
		    o->state == INET_UP, o->state == INET_UP ? "up" : "down");
	mbuf_printf(b, "</div><div class=\"stat\"><span class=\"lbl\">Last 24 h</span><span class=\"big\">");
	snprintf(txt, sizeof(txt), "%u", day_n);
	fig(b, "", NULL, "outages_24h", day_n, txt);
	status_fmt_duration(when, sizeof(when), day_s);
	mbuf_printf(b, "</span><span class=\"mut\"> outage%s", day_n == 1 ? "" : "s");
	if (day_n) {
		mbuf_printf(b, ", ");
		fig(b, "", NULL, "outage_seconds_24h", day_s, when);
	}
	mbuf_printf(b, "</span></div></div>");
	chart(b, s, h, &c, pts);
	mbuf_printf(b, "<p class=\"note\">Since start: ");
	snprintf(txt, sizeof(txt), "%llu", (unsigned long long)o->count);
	fig(b, "", "ispmon_outages_total", NULL, (double)o->count, txt);
	mbuf_printf(b, " outage%s, ", o->count == 1 ? "" : "s");
	status_fmt_duration(when, sizeof(when), outages_total_s(o));
	fig(b, "", "ispmon_outage_seconds_total", NULL, outages_total_s(o), when);
	mbuf_printf(b, " in all. An outage: no ping target answers. Strip: green up, red down, "
		       "grey not watched.</p><ul class=\"list\">");
	for (unsigned i = 0; i < OUTAGES_LISTED; i++) {
		const struct outage *e = outages_get(o, i);

		if (!e || (!e->ongoing && e->end_mono <= s->t_mono - STATUS_DAY_S))
			break;
		status_fmt_clock(when, sizeof(when), e->start_real, s->t_real);
		status_fmt_duration(txt, sizeof(txt), e->end_mono - e->start_mono);
		if (e->ongoing) {
			mbuf_printf(b, "<li><span>since %s</span>", when);
		} else {
			char until[32];

			status_fmt_clock(until, sizeof(until), e->end_real, s->t_real);
			mbuf_printf(b, "<li><span>%s to %s</span>", when, until);
		}
		if (!i) {
			mbuf_printf(b, "<span>");
			fig(b, e->ongoing ? "bad" : "", "ispmon_last_outage_duration_seconds", NULL,
			    e->end_mono - e->start_mono, txt);
			mbuf_printf(b, "%s</span></li>", e->ongoing ? " so far" : "");
		} else {
			mbuf_printf(b, "<span>%s</span></li>", txt);
		}
	}
	mbuf_printf(b, "</ul>");
	card_close(b);
}

static void card_devices(struct mbuf *b, const struct status_snapshot *s, const struct history *h,
			 struct history_point *pts)
{
	char key[160], txt[48], id[32], title[96];

	card_open(b, "devices", "Top devices");
	if (!s->devices_on) {
		card_off(b, "Per-device figures need a LAN interface (--lan-iface) and "
			    "--max-devices above 0.");
		return;
	}
	if (!s->n_devices)
		mbuf_printf(b, "<p class=\"note\">No device has sent or received anything yet.</p>");
	mbuf_printf(b, "<ul class=\"list\">");
	for (unsigned i = 0; i < s->n_devices; i++) {
		const struct status_device *dv = &s->dev[i];
		struct chart c = {
			.id = id, .title = title, .axis = axis_rate, .min_top = 12500, .n = 2, .small = true,
			.l = {{.series = dv->series, .kind_cls = "download", .name = "Download",
			       .area = true, .ref = NAN},
			      {.series = dv->series + 1, .kind_cls = "upload", .name = "Upload",
			       .ref = NAN}},
		};

		snprintf(id, sizeof(id), "c-dev%u", i);
		snprintf(title, sizeof(title), "Throughput of %s", dv->d.name);
		mbuf_printf(b, "<li class=\"dev\"><div class=\"row\"><span class=\"dn\">");
		esc(b, dv->d.name);
		mbuf_printf(b, "</span><span>");
		for (int d = 0; d < ISPMON_DIR_MAX; d++) {
			snprintf(key, sizeof(key),
				 "ispmon_device_throughput_bytes_per_second{device=\"%s\",direction=\"%s\"}",
				 dv->d.name, dir_names[d]);
			status_fmt_rate(txt, sizeof(txt), dv->d.rate[d]);
			mbuf_printf(b, "%s%s ", d ? " " : "", dir_arrows[d]);
			fig(b, d ? "c-upload" : "c-download", key, NULL, dv->d.rate[d], txt);
		}
		mbuf_printf(b, "</span></div><div class=\"row mut\"><span>since start</span><span>");
		for (int d = 0; d < ISPMON_DIR_MAX; d++) {
			snprintf(key, sizeof(key), "ispmon_device_bytes_total{device=\"%s\",direction=\"%s\"}",
				 dv->d.name, dir_names[d]);
			status_fmt_bytes(txt, sizeof(txt), (double)dv->d.bytes[d]);
			mbuf_printf(b, "%s%s ", d ? " " : "", dir_arrows[d]);
			fig(b, "", key, NULL, (double)dv->d.bytes[d], txt);
		}
		mbuf_printf(b, "</span></div>");
		chart(b, s, h, &c, pts);
		mbuf_printf(b, "</li>");
	}
	mbuf_printf(b, "</ul><p class=\"note\">");
	snprintf(txt, sizeof(txt), "%u", s->devices_seen);
	fig(b, "", "ispmon_devices_seen", NULL, s->devices_seen, txt);
	mbuf_printf(b, " device%s seen since start; the most traffic first.</p>",
		    s->devices_seen == 1 ? "" : "s");
	card_close(b);
}

static void footer(struct mbuf *b, const struct status_snapshot *s)
{
	char txt[32];

	mbuf_printf(b, "<footer>ispmon ");
	esc(b, s->version);
	mbuf_printf(b, " &middot; WAN <span data-figure=\"wan_iface\">");
	esc(b, s->ifaces[0]);
	mbuf_printf(b, "</span>");
	for (unsigned i = 1; i < s->n_ifaces; i++) {
		mbuf_printf(b, "%s<span data-figure=\"lan_iface\">", i == 1 ? " &middot; LAN " : ", ");
		esc(b, s->ifaces[i]);
		mbuf_printf(b, "</span>");
	}
	snprintf(txt, sizeof(txt), "%llu", (unsigned long long)s->collections);
	mbuf_printf(b, " &middot; collection ");
	fig(b, "", "ispmon_collections_total", NULL, (double)s->collections, txt);
	mbuf_printf(b, "<br><a href=\"/metrics\">Prometheus metrics</a> &middot; "
		       "<a href=\"/api/status\">These figures as JSON</a></footer>\n</div>\n</body></html>\n");
}

void status_render_html(const struct status_snapshot *s, const struct history *h, struct mbuf *b)
{
	struct history_point *pts = malloc(3 * MAX_PTS * sizeof(*pts));

	if (!pts) {
		b->err = -ENOMEM;
		return;
	}
	head(b, s);
	verdict(b, s);
	mbuf_printf(b, "<main class=\"grid\">\n");
	card_throughput(b, s, h, pts);
	card_capacity(b, s, h, pts);
	card_speedtest(b, s, h, pts);
	card_rtt(b, s, h, pts);
	card_bloat(b, s, h, pts);
	card_ping(b, s, h, pts);
	card_outages(b, s, h, pts);
	card_devices(b, s, h, pts);
	mbuf_printf(b, "</main>\n");
	footer(b, s);
	free(pts);
}
