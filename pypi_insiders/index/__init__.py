"""Stage two: the static simple index, derived only from the store and regenerated per project."""
