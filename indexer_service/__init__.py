"""The indexer job: streams Fashionpedia's images to the embedder and writes the vectors to ChromaDB."""
