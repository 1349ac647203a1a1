/* imp_kinds.c - the table of source kinds. Adding a kind is writing its imp_kind and listing it
 * here; the order is the order paths are sniffed in (a directory is an ImageFolder before any name
 * is looked at). */
#include "imp.h"

extern const imp_kind imp_kind_imagefolder, imp_kind_tsv, imp_kind_llmc, imp_kind_wds, imp_kind_npy;

const imp_kind *const imp_kinds[] = {
    &imp_kind_imagefolder, &imp_kind_tsv, &imp_kind_llmc, &imp_kind_wds, &imp_kind_npy,
};

const size_t imp_nkinds = sizeof imp_kinds / sizeof imp_kinds[0];
