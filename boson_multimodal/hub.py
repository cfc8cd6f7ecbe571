"""Getting the weights from the Hugging Face hub: the generation model and the audio tokenizer,
into a volume in this project's layout or into a hub cache. `huggingface_hub` does the transfer
(progress bars, resumed downloads, HF_TOKEN, HF_ENDPOINT, HF_HOME)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from boson_multimodal.layout import GENERATION_SUBDIR, TOKENIZER_SUBDIR, ModelPaths, read_revision

REPOS = {"generation": GENERATION_SUBDIR, "tokenizer": TOKENIZER_SUBDIR}  # the subdirs are the repo ids


class DownloadError(Exception):
    """The download cannot be done; `refused` when it is the request (a revision that does not
    exist, a different model in the way), not the network."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class RepoPlan:
    component: str
    repo: str
    revision: str  # the commit the requested revision resolves to
    requested: str  # the branch, tag or commit asked for
    files: int
    bytes: int

    def target(self, volume: ModelPaths) -> Path:
        if self.component not in REPOS:  # another model (the ASR one): under the volume's root, by repo id
            return volume.root / self.repo
        return volume.generation if self.component == "generation" else volume.tokenizer


def plan(revisions: dict[str, str | None], endpoint: str | None = None,
         repos: dict[str, str] | None = None) -> list[RepoPlan]:
    """What a download will fetch: each repo's commit, file count and size (the generation
    model and the audio tokenizer, or the `repos` given, by component)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=endpoint)
    plans = []
    for component, repo in (repos or REPOS).items():
        revision = revisions.get(component) or "main"
        try:
            info = api.model_info(repo, revision=revision, files_metadata=True)
        except RevisionNotFoundError:
            raise DownloadError(f"{repo} has no revision {revision!r}", refused=True) from None
        except RepositoryNotFoundError:
            raise DownloadError(f"{repo} was not found on the hub (or needs HF_TOKEN)", refused=True) from None
        except Exception as exc:  # connection refused, DNS, timeouts, 5xx
            raise DownloadError(f"the hub cannot be reached ({type(exc).__name__}: {exc})") from exc
        siblings = info.siblings or []
        plans.append(RepoPlan(component, repo, info.sha, revision, len(siblings), sum(s.size or 0 for s in siblings)))
    return plans


def download(plans: list[RepoPlan], volume: ModelPaths | None = None, cache_dir: Path | None = None,
             endpoint: str | None = None) -> dict[str, Path]:
    """Fetch each planned repo at its commit: into `volume`'s layout (a REVISION file records
    the commit; a different model already there is never written over), or into the hub
    cache `cache_dir`. Returns where each component is."""
    from huggingface_hub import snapshot_download

    where = {}
    if volume is not None:
        for p in plans:
            target = p.target(volume)
            existing = read_revision(target) if target.exists() else None
            if target.exists() and any(target.iterdir()) and existing not in (None, p.revision):
                raise DownloadError(f"{target} holds {p.repo} at {existing}, not {p.revision}: "
                                    "remove it or download elsewhere (--to)", refused=True)
            if existing is None and target.exists() and (target / "config.json").exists():
                raise DownloadError(f"{target} holds a model of unknown revision: remove it or download "
                                    "elsewhere (--to)", refused=True)
    for p in plans:
        try:
            if volume is not None:
                path = Path(snapshot_download(p.repo, revision=p.revision, local_dir=p.target(volume),
                                              endpoint=endpoint))
                (path / "REVISION").write_text(p.revision + "\n")
            else:
                path = Path(snapshot_download(p.repo, revision=p.revision, cache_dir=cache_dir, endpoint=endpoint))
                if p.requested != p.revision:  # the cache's ref names the commit, as a download by name would
                    refs = path.parent.parent / "refs"
                    refs.mkdir(exist_ok=True)
                    (refs / p.requested).write_text(p.revision)
        except Exception as exc:
            raise DownloadError(f"downloading {p.repo}@{p.revision} failed ({type(exc).__name__}: {exc}); "
                                "run the same command again to resume") from exc
        where[p.component] = path
    return where
