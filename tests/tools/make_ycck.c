/* make_ycck.c: re-encode a CMYK JPEG as YCCK (Adobe APP14, transform 2), which PIL cannot write.
 * Used by make_image_data.py:  cc -o make_ycck make_ycck.c -ljpeg && ./make_ycck in.jpg out.jpg
 * The CMYK samples are copied as stored (Adobe polarity), so the result shows the same picture. */
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: make_ycck IN_CMYK.jpg OUT_YCCK.jpg\n"); return 2; }
    FILE *in = fopen(argv[1], "rb");
    if (!in) { perror(argv[1]); return 1; }
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr je;
    d.err = jpeg_std_error(&je);
    jpeg_create_decompress(&d);
    jpeg_stdio_src(&d, in);
    jpeg_read_header(&d, TRUE);
    if (d.num_components != 4) { fprintf(stderr, "%s: not a 4-component JPEG\n", argv[1]); return 1; }
    d.out_color_space = JCS_CMYK;
    jpeg_start_decompress(&d);
    const size_t stride = (size_t)d.output_width * 4;
    unsigned char *pix = malloc(stride * d.output_height);
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = pix + stride * d.output_scanline;
        jpeg_read_scanlines(&d, &row, 1);
    }
    const int saw_adobe = d.saw_Adobe_marker;
    jpeg_finish_decompress(&d);
    fclose(in);

    FILE *out = fopen(argv[2], "wb");
    if (!out) { perror(argv[2]); return 1; }
    struct jpeg_compress_struct c;
    c.err = jpeg_std_error(&je);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, out);
    c.image_width = d.output_width;
    c.image_height = d.output_height;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, JCS_YCCK);  /* writes an Adobe marker with transform 2 */
    jpeg_set_quality(&c, 92, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = pix + stride * c.next_scanline;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    fclose(out);
    jpeg_destroy_decompress(&d);
    jpeg_destroy_compress(&c);
    free(pix);
    printf("%s: %ux%u YCCK (source %s an Adobe marker)\n", argv[2], c.image_width, c.image_height,
           saw_adobe ? "had" : "had no");
    return 0;
}
