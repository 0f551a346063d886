/* SPDX-License-Identifier: MIT */
/* Smallest program against an installed libvirtio: public headers only, found via pkg-config.
 * Used by scripts/install-test.sh next to examples/ring_demo.c. */
#include <stdio.h>
#include <string.h>

#include <virtio/common.h>
#include <virtio/mem.h>
#include <virtio/queue.h>
#include <virtio/status.h>

int main(void)
{
    struct vio_status_config cfg = {
        .struct_size = sizeof(cfg),
        .device_features = vio_feature_bit(VIO_F_VERSION_1),
    };
    struct vio_status *st = NULL;

    if (strcmp(vio_version(), VIO_VERSION_STRING) != 0) {
        fprintf(stderr, "header version %s, library version %s\n", VIO_VERSION_STRING,
                vio_version());
        return 1;
    }
    if (vio_status_new(&cfg, &st) != 0)
        return 1;
    int rc = vio_status_write(st, VIO_S_ACKNOWLEDGE, NULL);
    vio_status_free(st);
    if (rc != 0)
        return 1;
    printf("libvirtio %s: install smoke test ok\n", vio_version());
    return 0;
}
