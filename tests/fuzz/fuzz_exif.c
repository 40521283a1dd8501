/* fuzz_exif.c: libFuzzer harness for the EXIF orientation parser (vit_exif_orientation,
 * engine/image/image.c), reached from JPEG APP1 and PNG eXIf chunks: the input is the TIFF-structured
 * block.  The result must be an orientation 1..8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* its own allocation, so ASan sees any read past the block */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    int o = vit_exif_orientation(copy, size);
    free(copy);
    if (o < 1 || o > 8) abort();
    return 0;
}
