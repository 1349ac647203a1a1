/* shardpack_version.h - library version; meson reads these three lines. */
#ifndef SHARDPACK_VERSION_H
#define SHARDPACK_VERSION_H

#define SP_VERSION_MAJOR 0
#define SP_VERSION_MINOR 1
#define SP_VERSION_PATCH 0

/* ABI version: bumped on every incompatible change of the exported API.
 * It is the soname's number and what the Python bindings check. */
#define SP_ABI_VERSION 1

#endif
