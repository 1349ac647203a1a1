/*
 * cli_font.h - a 5x7 bitmap font for captions drawn into RGB images (shardpack preview).
 *
 * Glyphs: digits, letters (lowercase is drawn as uppercase), space and the punctuation
 * _ - . : / # ( ) , ' + = ! ? & %. Any other character, and each multi-byte UTF-8 sequence,
 * is drawn as one box. A glyph is CLI_FONT_W x CLI_FONT_H cells and text advances by
 * CLI_FONT_ADVANCE cells per glyph; every cell is scale x scale pixels.
 */
#ifndef SHARDPACK_CLI_FONT_H
#define SHARDPACK_CLI_FONT_H

#include <stddef.h>

enum { CLI_FONT_W = 5, CLI_FONT_H = 7, CLI_FONT_ADVANCE = 6 };

/* The CLI_FONT_H rows of the glyph of byte c, top first; bit CLI_FONT_W-1 is the leftmost
 * column. A character without a glyph gets the box. Never NULL. */
const unsigned char *cli_font_glyph(unsigned char c);

/* Number of glyphs text s is drawn with: one per ASCII byte, one per UTF-8 sequence (a byte of
 * 0x80 or above and the continuation bytes 0x80..0xBF after it). */
size_t cli_font_len(const char *s);

/* Draws s into an RGB image of width x height pixels (3 bytes a pixel, rows packed), its top-left
 * corner at (x, y), in colour rgb[0..2], at most max_glyphs glyphs: a longer text is cut and its
 * last two glyphs shown become "..". Pixels outside the image are not touched. Returns the glyphs
 * drawn. */
size_t cli_font_draw(unsigned char *img, int width, int height, int x, int y, int scale,
                     const unsigned char rgb[3], const char *s, size_t max_glyphs);

#endif
