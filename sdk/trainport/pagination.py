"""Pages of list results that fetch the pages after them on their own.

`for run in client.runs.list():` walks every page, asking for the next one only when the
current one is used up. `page.data` is just this page; `iter_pages()` goes page by page.
How the next page is asked for (an `after` cursor, or the change feed's `resource_version`) is
the resource's business: it hands the page a function that fetches the next one. Async list
calls return an `AsyncPageRequest`: awaited, the first page; iterated, every item.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

ItemT = TypeVar("ItemT")


class _PageBase(Generic[ItemT]):
    def __init__(
        self,
        data: list[ItemT],
        has_more: bool,
        next_cursor: str | None = None,
        resource_version: int | None = None,
    ) -> None:
        self.data = data
        self.has_more = has_more
        self.next_cursor = next_cursor
        self.resource_version = resource_version

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(items={len(self.data)}, has_more={self.has_more}, "
            f"next_cursor={self.next_cursor!r}, resource_version={self.resource_version!r})"
        )


class SyncPage(_PageBase[ItemT]):
    """One page of results; iterating it yields every item of every later page too."""

    def __init__(
        self,
        data: list[ItemT],
        has_more: bool,
        next_cursor: str | None = None,
        resource_version: int | None = None,
        fetch_next: Callable[[SyncPage[ItemT]], SyncPage[ItemT]] | None = None,
    ) -> None:
        super().__init__(data, has_more, next_cursor, resource_version)
        self._fetch_next = fetch_next

    def has_next_page(self) -> bool:
        return self.has_more and self._fetch_next is not None

    def next_page(self) -> SyncPage[ItemT]:
        if self._fetch_next is None or not self.has_more:
            raise RuntimeError("this is the last page; check has_next_page() first")
        return self._fetch_next(self)

    def iter_pages(self) -> Iterator[SyncPage[ItemT]]:
        page = self
        yield page
        while page.has_next_page():
            page = page.next_page()
            yield page

    def __iter__(self) -> Iterator[ItemT]:
        for page in self.iter_pages():
            yield from page.data


class AsyncPage(_PageBase[ItemT]):
    """The async twin of `SyncPage`: `async for item in page` walks every later page too."""

    def __init__(
        self,
        data: list[ItemT],
        has_more: bool,
        next_cursor: str | None = None,
        resource_version: int | None = None,
        fetch_next: Callable[[AsyncPage[ItemT]], Awaitable[AsyncPage[ItemT]]] | None = None,
    ) -> None:
        super().__init__(data, has_more, next_cursor, resource_version)
        self._fetch_next = fetch_next

    def has_next_page(self) -> bool:
        return self.has_more and self._fetch_next is not None

    async def next_page(self) -> AsyncPage[ItemT]:
        if self._fetch_next is None or not self.has_more:
            raise RuntimeError("this is the last page; check has_next_page() first")
        return await self._fetch_next(self)

    async def iter_pages(self) -> AsyncIterator[AsyncPage[ItemT]]:
        page = self
        yield page
        while page.has_next_page():
            page = await page.next_page()
            yield page

    async def __aiter__(self) -> AsyncIterator[ItemT]:
        async for page in self.iter_pages():
            for item in page.data:
                yield item


class AsyncPageRequest(Generic[ItemT]):
    """What an async list call returns: `await` it for the first `AsyncPage`, or `async for`
    over it directly for every item of every page (as openai-python's async pages do).

    `async for run in client.runs.list()` and `async for run in await client.runs.list()` both
    walk everything; nothing is sent until one of them starts.
    """

    def __init__(self, fetch_first: Callable[[], Awaitable[AsyncPage[ItemT]]]) -> None:
        self._fetch_first = fetch_first

    def __await__(self) -> Generator[Any, None, AsyncPage[ItemT]]:
        return self._fetch_first().__await__()

    async def __aiter__(self) -> AsyncIterator[ItemT]:
        page = await self._fetch_first()
        async for item in page:
            yield item
