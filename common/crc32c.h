/* crc32c.h - CRC-32C (Castagnoli), the checksum of wire tensors and model fingerprints. */
#ifndef SDC_CRC32C_H
#define SDC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of n bytes. */
uint32_t sdc_crc32c(const void *data, size_t n);
/* The CRC-32C of a stream continued by n more bytes: sdc_crc32c_update(sdc_crc32c(a, na), b, nb) is the
 * CRC-32C of a then b; sdc_crc32c_update(0, ...) = sdc_crc32c(...). */
uint32_t sdc_crc32c_update(uint32_t crc, const void *data, size_t n);
/* The table-driven path sdc_crc32c takes without SSE4.2 (exposed for tests). */
uint32_t sdc_crc32c_portable(const void *data, size_t n);

#endif
