/* rd.h - shared by the reader's modules. */
#ifndef SP_RD_H
#define SP_RD_H

#include "fmt.h"

/* Sets eb and the thread's last error to "PATH: [block B ]at byte O: why"; returns code. */
int rd_fail_at(sp_errbuf *eb, int code, const char *path, const fmt_err *e);

#endif
