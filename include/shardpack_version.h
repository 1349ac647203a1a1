/* shardpack_version.h - library version; meson reads these three lines. */
#ifndef SHARDPACK_VERSION_H
#define SHARDPACK_VERSION_H

#define SP_VERSION_MAJOR 0
#define SP_VERSION_MINOR 1
#define SP_VERSION_PATCH 0

/* ABI version: bumped on every incompatible change of the exported API.
 * It is the soname's number and what the Python bindings check.
 * 2: every public struct but sp_value begins with struct_size; the notes of sp_loader_stats are
 *    SP_ERRMSG_MAX bytes; the device fields of sp_loader_stats (appended under 1) counted.
 *    Appending a field to a struct with struct_size needs no bump. */
#define SP_ABI_VERSION 2

#endif
