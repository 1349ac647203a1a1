/* cli_progress.c - the progress line of long commands, drawn on stderr when it is a terminal. */
#include "cli.h"

#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static cli_progress *active;

void cli_progress_init(cli_progress *p, int quiet)
{
    memset(p, 0, sizeof *p);
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->start = cli_now();
    if (p->enabled)
        active = p;
}

void cli_progress_clear_active(void)
{
    if (active)
        cli_progress_clear(active);
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

static void fmt_eta(char *buf, size_t n, double s)
{
    if (s < 0 || s > 99 * 3600.0) {
        snprintf(buf, n, "--:--");
        return;
    }
    unsigned long t = (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%lu:%02lu", t / 60, t % 60);
}

void cli_progress_update(cli_progress *p, uint64_t items, uint64_t in_bytes,
                         const sp_write_stats *st, int force)
{
    if (!p->enabled)
        return;
    double now = cli_now();
    if (!force && now - p->last_draw < 0.1)
        return;
    p->last_draw = now;
    double elapsed = now - p->start;
    double rate = elapsed > 0 ? (double)in_bytes / elapsed : 0;

    /* Fraction done, from bytes when the total is known (items vary in size), else items. */
    double frac = -1;
    if (p->total_bytes)
        frac = (double)in_bytes / (double)p->total_bytes;
    else if (p->total_items)
        frac = (double)items / (double)p->total_items;
    if (frac > 1)
        frac = 1;

    char counts[64], speed[32], out[32], eta[32] = "--:--";
    if (p->total_items)
        snprintf(counts, sizeof counts, "%llu/%llu items", (unsigned long long)items,
                 (unsigned long long)p->total_items);
    else
        snprintf(counts, sizeof counts, "%llu items", (unsigned long long)items);
    cli_fmt_bytes(speed, sizeof speed, (uint64_t)rate);
    cli_fmt_bytes(out, sizeof out, st ? st->file_bytes : 0);
    if (frac > 0.001 && elapsed > 0.5)
        fmt_eta(eta, sizeof eta, elapsed * (1 - frac) / frac);

    char line[256];
    if (frac >= 0)
        snprintf(line, sizeof line, "%3d%% %s  %s/s  out %s  ETA %s", (int)(frac * 100), counts,
                 speed, out, eta);
    else
        snprintf(line, sizeof line, "%s  %s/s  out %s", counts, speed, out);

    int width = term_width() - 1;
    int len = (int)strlen(line);
    int bar = width - len - 3;
    fputc('\r', stderr);
    if (frac >= 0 && bar >= 10) {
        if (bar > 40)
            bar = 40;
        int fill = (int)(frac * bar);
        fputc('[', stderr);
        for (int i = 0; i < bar; i++)
            fputc(i < fill ? '#' : '.', stderr);
        fputs("] ", stderr);
    }
    fprintf(stderr, "%.*s\x1b[K", width > 0 ? width : 0, line);
    fflush(stderr);
    p->drawn = 1;
}

void cli_progress_clear(cli_progress *p)
{
    if (p->enabled && p->drawn) {
        fputs("\r\x1b[K", stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}
