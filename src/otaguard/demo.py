"""``otaguard demo``: the whole path once, on embedded defaults.

A maker signs v1 and v2 with offline keys (root 2-of-3, targets 2-of-2), the server (SQLite,
local blob store, TLS from a local CA) publishes them, a fleet of simulated devices running v1
in slot a is deployed v2, and every device verifies, installs into slot b, reboots, passes its
health check, commits and reports. Keys and TLS material live in ``DATA_DIR/keys`` and
``DATA_DIR/tls`` and are reused by later runs; everything else is made fresh in
``DATA_DIR/run``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, SSlibKey

from otaguard.api_client import ManagementClient
from otaguard.crypto.keys import load_or_create_signer
from otaguard.device.image import build_image
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.identity.enroll import enroll
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.maker import MakerRepository
from otaguard.repo.roles import ROOT, TARGETS
from otaguard.server.context import ServerContext, ServerSettings, read_or_create_secret
from otaguard.server.runner import RunningServer, start_in_thread
from otaguard.sim.device import Provisioning, SimulatedDevice
from otaguard.sim.fleet import DeviceRun, run_fleet

HARDWARE = "sim-board"


def _key(d: dict[str, Any]) -> SSlibKey:
    data = dict(d)
    return SSlibKey.from_dict(data.pop("keyid"), data)


@dataclass
class Demo:
    data_dir: Path
    devices: int = 20
    host: str = "127.0.0.1"
    port: int = 0
    payload_size: int = 256 * 1024
    workers: int = 8
    ctx: ServerContext | None = None
    server: RunningServer | None = None
    api: ManagementClient | None = None
    repo: MakerRepository | None = None
    fleet: list[SimulatedDevice] = field(default_factory=list)
    maker_signers: dict[str, list[CryptoSigner]] = field(default_factory=dict)
    # more ServerSettings fields (tests: e.g. ``mqtt``, ``rollout_interval``)
    server_options: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    # -- steps ------------------------------------------------------------------------------
    def start_server(self) -> None:
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        settings = ServerSettings(
            data_dir=self.run_dir / "server",
            host=self.host,
            port=self.port,
            keys_dir=self.data_dir / "keys" / "online",
            tls_dir=self.data_dir / "tls",
            poll_interval=5,
            **self.server_options,
        )
        self.ctx = ServerContext.open(settings)
        self.server = start_in_thread(self.ctx)
        assert settings.tls is not None
        self.api = ManagementClient(self.url, self.ctx.admin_token, settings.tls.ca_cert)

    def setup_repository(self) -> None:
        assert self.api is not None
        keys_dir = self.data_dir / "keys" / "maker"
        passphrase = read_or_create_secret(keys_dir / "passphrase").encode()
        roots = [load_or_create_signer(keys_dir, f"root-{i}", passphrase) for i in (1, 2, 3)]
        targets = [load_or_create_signer(keys_dir, f"targets-{i}", passphrase) for i in (1, 2)]
        self.maker_signers = {ROOT: roots, TARGETS: targets}
        online = self.api.online_keys()
        self.repo = MakerRepository.init(
            self.run_dir / "repo",
            root_keys=[s.public_key for s in roots],
            root_threshold=2,
            targets_keys=[s.public_key for s in targets],
            targets_threshold=2,
            snapshot_key=_key(online["snapshot"]),
            timestamp_key=_key(online["timestamp"]),
        )
        for signer in roots[:2]:  # two of three root key holders sign
            self.repo.sign(ROOT, signer)

    def release(
        self, version: str, *, security_version: int = 0, publish: bool = True
    ) -> tuple[str, bytes]:
        """Build, add and sign (2 of 2 targets keys) an image; publish unless told not to."""
        assert self.repo is not None
        assert self.api is not None
        image = build_image(
            version, HARDWARE, security_version=security_version, payload_size=self.payload_size
        )
        name = f"{HARDWARE}/firmware-{version}.img"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "image"
            path.write_bytes(image)
            self.repo.add_target(
                path,
                name,
                ReleaseInfo(version, (HARDWARE,), security_version, notes=f"demo {version}"),
            )
        for signer in self.maker_signers[TARGETS]:
            self.repo.sign(TARGETS, signer)
        if publish:
            self.api.publish(self.repo)
        return name, image

    def provision_fleet(self, image: bytes, **device_kwargs: Any) -> None:
        assert self.api is not None
        assert self.ctx is not None
        assert self.repo is not None
        tls = self.ctx.settings.tls
        assert tls is not None
        director_pub = self.run_dir / "director.pub.json"
        from otaguard.crypto.keys import public_key_json

        director_pub.write_text(public_key_json(self.ctx.director.public_key))
        prov = Provisioning(
            server_url=self.url,
            ca_file=tls.ca_cert,
            director_key_file=director_pub,
            trusted_root=self.repo.root_history()[0].read_bytes(),
        )
        for i in range(1, self.devices + 1):
            device_id = f"sim-{i:04d}"
            directory = self.run_dir / "fleet" / device_id
            key = SimulatedDevice.generate_manifest_key(directory)
            credential = self.api.register_device(device_id, HARDWARE, ["demo"], manifest_key=key)
            dev = SimulatedDevice.provision(
                directory,
                device_id=device_id,
                hardware=HARDWARE,
                credential=credential,
                image=image,
                provisioning=prov,
                **device_kwargs,
            )
            if "http_transport" in device_kwargs:
                # A custom transport (a test's network) cannot present a client certificate:
                # this device authenticates with its bearer credential.
                dev.power_on()
                self.fleet.append(dev)
                continue
            # Device identity: its own key, a CSR and a one-time token -> client certificate.
            token = self.api.enrollment_token(device_id)
            state = directory / "state"
            tls_key = load_or_create_key(state / "client.key")
            pem = enroll(self.url, tls.ca_cert, device_id, token, make_csr(tls_key, device_id))
            (state / "client.pem").write_text(pem)
            dev.config.client_cert_file = state / "client.pem"
            dev.config.client_key_file = state / "client.key"
            dev.power_on()
            self.fleet.append(dev)

    def deploy(self, target_name: str, name: str = "demo-rollout") -> int:
        assert self.api is not None
        dep = self.api.create_deployment(name, target_name, {"all": True})
        return int(dep["id"])

    def run(self, on_done: Any = None) -> list[DeviceRun]:
        return run_fleet(self.fleet, workers=self.workers, on_done=on_done)

    def close(self) -> None:
        for dev in self.fleet:
            dev.close()
        if self.api is not None:
            self.api.close()
        if self.server is not None:
            self.server.stop()
        if self.ctx is not None:
            self.ctx.close()
