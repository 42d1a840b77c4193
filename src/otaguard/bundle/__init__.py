"""Offline update bundles: a tar carrying an image and the signed TUF metadata for it."""
