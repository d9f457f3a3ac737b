"""The Prior protocol: everything the DGP engine and ``restore()`` ask of a prior.

A prior registered through ``register_priors`` is any object with these attributes and
methods (it need not subclass anything; :class:`~dgp_toolkit.priors.biggan.prior.BigGANPrior`
is the reference implementation). ``dgp_toolkit.testing.PriorContract`` checks a prior
against it. "Generator" below is the prior's own module type; the engine never looks
inside it, it only passes it back to the prior.

Generator copies are how the engine batches images: :meth:`Prior.generator_copies` returns
one module holding ``n`` independent trainable copies of the generator (stacked weights),
in which sample ``i`` of a batch of ``n`` goes through copy ``i`` and nothing mixes the
copies, so ``n`` images optimized together are ``n`` separate runs.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import torch


@runtime_checkable
class Prior(Protocol):
    """A generative prior with a generator to fine-tune and (usually) a discriminator."""

    name: str

    @property
    def device(self) -> torch.device: ...

    @property
    def resolution(self) -> int:
        """Side of the (square) images the generator makes."""

    @property
    def dim_z(self) -> int:
        """Size of a latent vector."""

    @property
    def n_classes(self) -> int: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def class_index(self, value: int | str) -> int:
        """The index of a class given by index or name; a ``DGPUsageError`` if unknown."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for a run's resolved configuration."""

    # generation and features
    def embed(self, y: Any, *, model: Any = None) -> torch.Tensor:
        """Class embeddings ``(B, e)`` of classes ``y``; with generator copies, copy ``i``
        embeds ``y[i]``."""

    def generate(self, z: torch.Tensor, y: Any = None, *, embedding: torch.Tensor | None = None,
                 model: Any = None) -> torch.Tensor:
        """Images ``(B, 3, R, R)`` in [-1, 1]; differentiable in ``z``, ``embedding`` and a
        trainable ``model`` (default: the prior's frozen generator)."""

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The discriminator's feature list of ``images`` (the frozen D; per sample)."""

    def feature_extractor(self, *, channels_last: bool = False) -> Callable[[torch.Tensor], list[torch.Tensor]]:
        """:meth:`features` to differentiate through during a run (optionally on a
        channels-last copy of D); the prior is never changed."""

    # fine-tuning
    def generator_copies(self, copies: int, *, tune_embedding: bool = False) -> Any:
        """``copies`` trainable independent generator copies in one module (see above)."""

    def stages(self, model: Any = None, *, include_embedding: bool = False) -> list[list[torch.nn.Parameter]]:
        """The fine-tunable stages of a generator (or of copies), in order, as parameter lists."""

    def copy_state(self, model: Any, index: int) -> dict[str, torch.Tensor]:
        """Copy ``index`` of :meth:`generator_copies` as a state dict in the prior's layout."""

    def fresh_generator(self) -> Any:
        """One trainable generator copy in the prior's own layout."""

    def generator_state(self, model: Any = None) -> dict[str, torch.Tensor]: ...

    def load_generator_state(self, state: Mapping[str, torch.Tensor], model: Any = None) -> None: ...

    def set_instance_norm(self, enabled: bool, model: Any = None) -> None:
        """DGP's instance-norm path (``use_in``); a prior without it may ignore ``True``."""

    def instance_norm_stats(self, model: Any) -> dict[str, torch.Tensor] | None: ...

    def set_instance_norm_stats(self, stats: Mapping[str, torch.Tensor] | None, model: Any) -> None: ...
