"""``python -m jukinet_ops.local.moto_server`` — moto's server with jukinet's corrections
(``moto_patches``) applied first. Arguments are moto.server's."""

from __future__ import annotations

from jukinet_ops.local import moto_patches

if __name__ == "__main__":
    moto_patches.apply_server()
    from moto.server import main

    main()
