/* SPDX-License-Identifier: MIT */
/**
 * @file net_defs.h
 * @brief virtio-net feature bit numbers and constants shared by the device model,
 * the driver-side helper and the backends.
 *
 * @defgroup net_defs virtio-net constants
 * @brief Feature bit numbers (spec values) under the library's own prefix, so a user
 * can include these and <linux/virtio_net.h> together.
 * @{
 */
#ifndef VIO_NET_DEFS_H
#define VIO_NET_DEFS_H

#ifdef __cplusplus
extern "C" {
#endif

/** virtio-net feature bit numbers (virtio 1.2, 5.1.3). */
enum vio_net_feature {
    VIO_NET_F_CSUM = 0,          /**< device handles packets with partial checksum */
    VIO_NET_F_GUEST_CSUM = 1,    /**< driver handles packets with partial checksum */
    VIO_NET_F_CTRL_GUEST_OFFLOADS = 2, /**< offloads reconfigurable through the ctrl vq */
    VIO_NET_F_MTU = 3,           /**< config mtu is valid */
    VIO_NET_F_MAC = 5,           /**< config mac is valid */
    VIO_NET_F_GUEST_TSO4 = 7,    /**< driver can receive TSOv4 */
    VIO_NET_F_GUEST_TSO6 = 8,    /**< driver can receive TSOv6 */
    VIO_NET_F_GUEST_ECN = 9,     /**< driver can receive TSO with ECN */
    VIO_NET_F_GUEST_UFO = 10,    /**< driver can receive UFO */
    VIO_NET_F_HOST_TSO4 = 11,    /**< device can receive TSOv4 from the driver */
    VIO_NET_F_HOST_TSO6 = 12,    /**< device can receive TSOv6 */
    VIO_NET_F_HOST_ECN = 13,     /**< device can receive TSO with ECN */
    VIO_NET_F_HOST_UFO = 14,     /**< device can receive UFO */
    VIO_NET_F_MRG_RXBUF = 15,    /**< driver can merge receive buffers */
    VIO_NET_F_STATUS = 16,       /**< config status is valid */
    VIO_NET_F_CTRL_VQ = 17,      /**< control virtqueue present */
    VIO_NET_F_CTRL_RX = 18,      /**< RX mode control */
    VIO_NET_F_CTRL_VLAN = 19,    /**< VLAN filtering */
    VIO_NET_F_CTRL_RX_EXTRA = 20, /**< extra RX mode control */
    VIO_NET_F_GUEST_ANNOUNCE = 21, /**< driver can send gratuitous packets */
    VIO_NET_F_MQ = 22,           /**< multiqueue with automatic steering */
    VIO_NET_F_CTRL_MAC_ADDR = 23, /**< MAC address set through the ctrl vq */
    VIO_NET_F_HOST_USO = 56      /**< device can receive USO */
};

/** Link status bits of the config status field. */
#define VIO_NET_S_LINK_UP 1u  /**< the link is up */
#define VIO_NET_S_ANNOUNCE 2u /**< the driver should announce itself (gratuitous ARP) */

#ifdef __cplusplus
}
#endif
/** @} */
#endif
