"""Offline update bundles: a tar carrying an image and the signed TUF metadata for it.

``create`` runs where a bundle is made (a maker or operator machine talking to a server through
``net``); ``format`` reads bundles and runs on the device. Never imports the server side.
"""
