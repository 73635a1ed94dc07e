"""The sandbox layer: images, containers, logs and networking on an embedded containerd.

Provider-agnostic: nothing here knows about forges. The scheduler reaches it only
through ``ephemerd.capabilities.SandboxBackend``; the daemon builds it::

    async with open_containerd(data_dir=data_dir) as client:
        async with open_registry_client() as registry, open_job_network(data_dir=data_dir) as net:
            images = ImageStore(client, source=registry)
            async with open_sandbox_backend(
                client, data_dir=data_dir, images=images, network=net
            ) as sandboxes:
                ...
"""

from ._backend import ContainerdSandbox, open_sandbox_backend
from ._client import MANAGED_LABEL, NAMESPACE, ContainerdClient
from ._content import BlobDescriptor, ContentSink
from ._contentstore import ContentStore
from ._embedded import EmbeddedContainerd, embedded_socket, open_containerd
from ._handle import ContainerdHandle
from ._host_network import DEFAULT_SUBNET, open_job_network
from ._hostimage import HOST_IMAGE, build_host_image, host_python_paths
from ._images import ImageInfo, ImageSource, ImageStore
from ._logs import log_path, prune_logs
from ._network import JobAttachment, JobNetwork
from ._oci import ImageRuntime, Platform, PulledImage
from ._oci_archive import import_archive
from ._reference import ImageReference, parse_reference
from ._registry import (
    DEFAULT_PULL_RETRY,
    RegistryClient,
    RegistryCredentials,
    open_registry_client,
    pull_image,
)
from ._runtime import NetworkAttacher
from ._stack import SandboxStack, ensure_host_image, open_sandbox_stack

__all__ = [
    "DEFAULT_PULL_RETRY",
    "DEFAULT_SUBNET",
    "HOST_IMAGE",
    "MANAGED_LABEL",
    "NAMESPACE",
    "BlobDescriptor",
    "ContainerdClient",
    "ContainerdHandle",
    "ContainerdSandbox",
    "ContentSink",
    "ContentStore",
    "EmbeddedContainerd",
    "ImageInfo",
    "ImageReference",
    "ImageRuntime",
    "ImageSource",
    "ImageStore",
    "JobAttachment",
    "JobNetwork",
    "NetworkAttacher",
    "Platform",
    "PulledImage",
    "RegistryClient",
    "RegistryCredentials",
    "SandboxStack",
    "build_host_image",
    "embedded_socket",
    "ensure_host_image",
    "host_python_paths",
    "import_archive",
    "log_path",
    "open_containerd",
    "open_job_network",
    "open_registry_client",
    "open_sandbox_backend",
    "open_sandbox_stack",
    "parse_reference",
    "prune_logs",
    "pull_image",
]
