"""The store's scale label formats (in-store EAN-13 with prefix 2: weighed or priced items) and the
GS1 price/weight verifier digit some of them carry: the config model ([scanning] in config.toml) and
the arithmetic. Kept ours: these layouts are the store's scales' settings, not a GS1 standard."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ScaleName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
ScalePrefix = Annotated[str, Field(pattern=r"^2[0-9]{0,2}$")]


class ScaleFormat(BaseModel):
    """One label layout of the store's scales: EAN-13 = prefix + item + value + check digit.

    The common Chinese layout (大华/顶尖/寺冈 defaults): 2-digit prefix 2x, 5-digit item (PLU), 5-digit
    value, EAN check digit. `value_check` puts a GS1 price/weight verifier digit inside the value field:
    "before" (GS1's placement: C VVVV) or "after" (VVVV C); the value then has value_digits - 1 digits.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: ScaleName
    prefixes: Annotated[list[ScalePrefix], Field(min_length=1, max_length=100)]
    item_digits: Annotated[int, Field(ge=1, le=10)] = 5
    value: Literal["price", "weight"]
    value_digits: Annotated[int, Field(ge=1, le=10)] = 5
    value_check: Literal["none", "before", "after"] = "none"
    price_decimals: Literal[0, 1, 2] = 2          # price formats: 2 = the value is in fen, 1 = jiao, 0 = yuan
    weight_unit: Literal["g", "10g"] = "g"        # weight formats

    @model_validator(mode="after")
    def _layout(self):
        for prefix in self.prefixes:
            total = len(prefix) + self.item_digits + self.value_digits + 1
            if total != 13:
                raise ValueError(f"prefix {prefix!r} + {self.item_digits} item digits + {self.value_digits} value "
                                 f"digits + 1 check digit is {total} digits, an EAN-13 has 13")
        if len(set(self.prefixes)) != len(self.prefixes):
            raise ValueError("a prefix is listed twice")
        if self.value_check != "none" and self.value_digits - 1 not in (4, 5):
            raise ValueError("value_check needs value_digits 5 or 6 (a 4- or 5-digit value and its verifier digit)")
        if self.value == "weight" and "price_decimals" in self.model_fields_set:
            raise ValueError("price_decimals is for value = \"price\" formats")
        if self.value == "price" and "weight_unit" in self.model_fields_set:
            raise ValueError("weight_unit is for value = \"weight\" formats")
        return self


DEFAULT_FORMATS: tuple[ScaleFormat, ...] = (
    ScaleFormat(name="weight", prefixes=["28"], item_digits=5, value="weight", value_digits=5, weight_unit="g"),
    ScaleFormat(name="price", prefixes=["20", "21", "22", "23", "24", "25", "26", "27", "29"], item_digits=5,
                value="price", value_digits=5, price_decimals=2),
)


class ScanningSection(BaseModel):
    """[scanning] in config.toml; its formats are [[scanning.scales]] tables, tried in order."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    scales: Annotated[list[ScaleFormat], Field(max_length=20)] = Field(default_factory=lambda: list(DEFAULT_FORMATS))

    @model_validator(mode="after")
    def _no_shadowing(self):
        names: set[str] = set()
        earlier: list[tuple[str, str]] = []
        for scale in self.scales:
            if scale.name in names:
                raise ValueError(f"scale format name {scale.name!r} is used twice")
            names.add(scale.name)
            for prefix in scale.prefixes:
                for other_name, other in earlier:
                    if prefix.startswith(other):
                        raise ValueError(f"prefix {prefix!r} of {scale.name!r} never matches: {other_name!r} "
                                         f"before it takes {other!r}")
            earlier.extend((scale.name, p) for p in scale.prefixes)
        return self


# GS1 General Specifications 7.9.2-7.9.4: price/weight verifier digits.
_W2M = (0, 2, 4, 6, 8, 9, 1, 3, 5, 7)   # 2-: x2, minus the tens digit
_W3 = (0, 3, 6, 9, 2, 5, 8, 1, 4, 7)    # 3: x3, units digit
_W5P = (0, 5, 1, 6, 2, 7, 3, 8, 4, 9)   # 5+: x5, plus the tens digit
_W5M = (0, 5, 9, 4, 8, 3, 7, 2, 6, 1)   # 5-: x5, minus the tens digit


def price_check_digit(digits: str) -> int:
    """The GS1 price/weight verifier digit of a 4- or 5-digit value."""
    d = [int(c) for c in digits]
    if len(d) == 4:
        return (3 * (_W2M[d[0]] + _W2M[d[1]] + _W3[d[2]] + _W5M[d[3]])) % 10
    if len(d) == 5:
        total = _W5P[d[0]] + _W2M[d[1]] + _W5M[d[2]] + _W5P[d[3]] + _W2M[d[4]]
        return _W5M.index((10 - total % 10) % 10)
    raise ValueError("a price/weight verifier digit covers 4 or 5 digits")
