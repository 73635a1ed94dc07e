"""The image a GitHub job asks for with ``container:``: the shared workflow parsing.

The parsing lives in ``ephemerd.forges._workflow``, shared with Forgejo and Gitea.
"""

from ephemerd.forges._workflow import (
    WorkflowImages,
    container_image,
    decode_content,
    find_image,
    job_images,
)

__all__ = ["WorkflowImages", "container_image", "decode_content", "find_image", "job_images"]
