"""Key material and TLS, shared by every side: maker keys (file or PKCS#11) in ``keys`` and
``hsm``, the device's manifest key in ``device_key``, TLS contexts and CA builders in ``tls``.

Imports only ``errors`` and the crypto libraries (cryptography, securesystemslib); never a side's
package.
"""
